# The static frontend export, built offline from the committed npm lock (nix/frontend), by the
# same command the tests and the first run use:
#   python -m working.entrypoint build-frontend --out DIR --node-modules NODE_MODULES_DIR
{
  importNpmLock,
  nodejs,
  removeReferencesTo,
  stdenvNoCC,
  src,
  venv,
  version,
}:
let
  # One fixed-output fetch per tarball, keyed by the `integrity` of each package-lock.json entry:
  # no aggregate hash to keep in sync with the lock.
  nodeModules = importNpmLock.buildNodeModules {
    npmRoot = ./frontend;
    inherit nodejs;
    # Reflex installs its packages with --legacy-peer-deps; the lock was resolved the same way.
    derivationArgs.npmFlags = [ "--legacy-peer-deps" ];
  };
in
stdenvNoCC.mkDerivation {
  pname = "working-frontend";
  inherit version src;

  # node and npm for Reflex's build; the venv has the package, reflex and rxconfig.
  nativeBuildInputs = [
    nodejs
    venv
    removeReferencesTo
  ];

  env = {
    REFLEX_TELEMETRY_ENABLED = "false";
    REFLEX_CHECK_LATEST_VERSION = "false";
  };

  dontConfigure = true;

  buildPhase = ''
    runHook preBuild
    export HOME=$(mktemp -d)
    python -m working.entrypoint build-frontend --out "$out" --node-modules ${nodeModules}/node_modules
    # A bundler can leave build-time paths in comments or source maps; they mean nothing at
    # run time and would drag node_modules (and so Node) into the image.
    find "$out" -type f -exec remove-references-to -t ${nodeModules} -t ${nodejs} -t ${venv} {} +
    runHook postBuild
  '';

  dontInstall = true;
  # patchShebangs would rewrite `#!/usr/bin/env node` lines to a store path of Node.
  dontFixup = true;

  # Static files only: the build fails, rather than the image growing, if a store path slips in.
  allowedReferences = [ ];

  passthru = { inherit nodeModules; };
}
