// A component of the app's own, in plain JavaScript: imported by the bundle from assets/.
import { createElement } from "react";

export function Greeting({ name }) {
  return createElement("span", { id: "greeting" }, `Hello, ${name}, from assets/greeting.js`);
}
