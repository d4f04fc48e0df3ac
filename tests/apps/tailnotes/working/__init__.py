"""tailnotes: a guestbook styled with Tailwind, the second app the runtime is proven with."""
