# The static frontend export, built offline from the committed npm lock (nix/frontend), by the
# same command the tests and the first run use:
#   python -m working.runtime.entrypoint build-frontend --out DIR --node-modules NODE_MODULES_DIR
# (the module named by the contract's entrypoint.module).
{
  contract,
  importNpmLock,
  nodejs,
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
  ];

  env = {
    REFLEX_TELEMETRY_ENABLED = "false";
    REFLEX_CHECK_LATEST_VERSION = "false";
  };

  dontConfigure = true;

  # The export is written in the build's own temporary directory and moved into place whole:
  # the command's staging directory (`<out>.partial`, beside its --out) never touches the store.
  # Before compressing, the command replaces the hash of every /nix/store/<hash>- path in every
  # file (a bundler can leave paths of node_modules, Node or a wheel in comments and source
  # maps), then decompresses each .br/.gz and fails if any store path is left (working/runtime/frontend.py).
  buildPhase = ''
    runHook preBuild
    export HOME=$(mktemp -d)
    python -m ${contract.entrypoint.module} build-frontend --out "$TMPDIR/export" --node-modules ${nodeModules}/node_modules
    runHook postBuild
  '';

  installPhase = ''
    runHook preInstall
    mv "$TMPDIR/export" "$out"
    runHook postInstall
  '';

  # patchShebangs would rewrite `#!/usr/bin/env node` lines to a store path of Node.
  dontFixup = true;

  # Static files only: Nix's own reference scan fails the build too, should a path of a real
  # store object slip past the check above (it cannot see inside .br/.gz; the check can).
  allowedReferences = [ ];

  passthru = { inherit nodeModules; };
}
