# Evaluates uv2nix against this repository's uv.lock with nothing but nixpkgs.lib and the pinned
# pyproject.nix and uv2nix trees (see tests/test_nix.py::test_uv2nix_resolves_the_lock).
#
# The package set is applied to a stand-in for nixpkgs: a CPython 3.12 / glibc interpreter
# description for the given system and a mkDerivation that returns its attributes. That is
# enough for uv2nix to resolve the lock, evaluate every PEP 508 marker and pick a wheel per
# package (the work that happens at evaluation time); nothing is built or fetched.
{
  sources,
  repo,
  system,
}:
let
  lib = import (sources + "/nixpkgs-lib/lib");
  pyproject-nix = import (sources + "/pyproject-nix") { inherit lib; };
  uv2nix = import (sources + "/uv2nix/lib") { inherit lib pyproject-nix; };

  workspace = uv2nix.workspace.loadWorkspace { workspaceRoot = repo; };

  platform = lib.systems.elaborate system;
  libc = {
    pname = "glibc";
    version = "2.40";
    linuxHeaders.version = "6.12";
  };
  stdenv = {
    hostPlatform = platform;
    buildPlatform = platform;
    targetPlatform = platform;
    inherit (platform) isLinux isDarwin;
    cc.libc = libc;
    mkDerivation = f: lib.fix (self: if builtins.isFunction f then f self else f);
  };
  python = {
    pname = "python3";
    version = "3.12.12";
    passthru = {
      implementation = "cpython";
      pythonVersion = "3.12";
      sourceVersion = {
        major = "3";
        minor = "12";
      };
    };
    inherit stdenv;
  };
  stubs = {
    inherit stdenv python;
    fetchurl = args: args // { outPath = "/nix/store/fetched-${args.name or "src"}"; };
    pythonManylinuxPackages = {
      manylinux1 = [ ];
      manylinux2010 = [ ];
      manylinux2014 = [ ];
    };
    resolveBuildSystem = _: [ ];
    autoPatchelfHook = "autoPatchelfHook";
    unzip = "unzip";
    pyprojectHook = "pyprojectHook";
    pyprojectWheelHook = "pyprojectWheelHook";
    pyprojectEditableHook = "pyprojectEditableHook";
  };
  callPackage = f: args: f (builtins.intersectAttrs (builtins.functionArgs f) stubs // args);

  # The same overlay call as nix/python.nix, resolved for the runtime dependencies only (what the
  # image's venv gets from workspace.deps.default).
  overlay = workspace.mkPyprojectOverlay {
    sourcePreference = "wheel";
    dependencies = workspace.deps.default;
  };
  packages = overlay { inherit callPackage; } {
    inherit python stdenv;
  };
in
{
  deps = {
    inherit (workspace.deps) default all;
  };
  packages = lib.mapAttrs (
    _: drv:
    {
      inherit (drv) version;
      format = drv.passthru.format or "local";
      wheel = if (drv.passthru.format or null) == "wheel" then drv.src.name else null;
      # What mkVirtualEnv follows to build the venv's closure.
      inherit (drv.passthru) dependencies;
      extras = drv.passthru.optional-dependencies or { };
    }
  ) packages;
}
