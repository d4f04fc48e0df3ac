# Evaluates every output of flake.nix, for every system it declares, and judges each as
# `nix flake check` does: every package, check, dev shell and formatter must be a derivation
# (instantiated here to its .drv), every app `{ type = "app"; program = <string>; }`.
#
# The inputs are the real pyproject.nix, uv2nix and build-system-pkgs flakes at the flake.lock
# revisions, called through their own flake.nix; nixpkgs is nixpkgs-standin.nix on the real
# nixpkgs.lib. See tests/test_nix.py::test_the_whole_flake_evaluates for how to run it.
{
  sources,
  repo,
  rev ? "0123456789abcdef0123456789abcdef01234567",
}:
let
  lib = import (sources + "/nixpkgs-lib/lib");

  nixpkgs = {
    # The flake uses `nixpkgs.lib` and `import nixpkgs { ... }` (./nixpkgs-standin/default.nix).
    inherit lib;
    outPath = ./nixpkgs-standin;
  };

  # What Nix passes as an input: the flake's outputs, its source and `self` for itself.
  callFlake =
    src: inputs: sourceInfo:
    let
      outputs = (import (src + "/flake.nix")).outputs (inputs // { self = result; });
      result =
        outputs
        // sourceInfo
        // {
          outPath = src;
          inherit inputs outputs;
          _type = "flake";
        };
    in
    result;

  pyproject-nix = callFlake (sources + "/pyproject-nix") { inherit nixpkgs; } { };
  uv2nix = callFlake (sources + "/uv2nix") { inherit nixpkgs pyproject-nix; } { };
  pyproject-build-systems = callFlake (sources + "/build-system-pkgs") {
    inherit nixpkgs pyproject-nix uv2nix;
  } { };
  flake =
    callFlake repo
      {
        inherit
          nixpkgs
          pyproject-nix
          uv2nix
          pyproject-build-systems
          ;
      }
      {
        inherit rev;
        shortRev = builtins.substring 0 7 rev;
      };

  # `nix flake check`'s judgement of each output type.
  derivationAt =
    path: value:
    if (value.type or null) == "derivation" then
      value.drvPath
    else
      throw "flake attribute '${path}' is not a derivation";
  # Nix's src/nix/flake.cc checkApp: `type = "app"`, a string `program`, no other attribute
  # than type, program and meta; a missing meta.description only warns there, and fails here.
  appAt =
    path: value:
    if !((value.type or null) == "app" && builtins.isString (value.program or null)) then
      throw "flake attribute '${path}' is not an app definition"
    else if lib.subtractLists [ "type" "program" "meta" ] (lib.attrNames value) != [ ] then
      throw "app '${path}' has unsupported attribute '${lib.head (lib.subtractLists [ "type" "program" "meta" ] (lib.attrNames value))}'"
    else if !builtins.isString (value.meta.description or null) then
      throw "app '${path}' lacks attribute 'meta.description'"
    else
      value.program;

  perSystem =
    kind: judge:
    lib.mapAttrs (
      system: set: lib.mapAttrs (name: judge "${kind}.${system}.${name}") set
    ) flake.${kind};

  known = [
    "packages"
    "checks"
    "apps"
    "devShells"
    "formatter"
  ];
  unknown = lib.subtractLists known (lib.attrNames flake.outputs);
in
assert lib.assertMsg (unknown == [ ]) "outputs this harness does not judge: ${toString unknown}";
{
  judged = {
    packages = perSystem "packages" derivationAt;
    checks = perSystem "checks" derivationAt;
    devShells = perSystem "devShells" derivationAt;
    apps = perSystem "apps" appAt;
    formatter = lib.mapAttrs (system: derivationAt "formatter.${system}") flake.formatter;
  };
  # The image as nix/image.nix asked dockerTools for it (config, layer commands, contents).
  images = lib.mapAttrs (_: packages: packages.image.standin) flake.packages;
  imageRefs = lib.mapAttrs (_: packages: "${packages.image.imageName}:${packages.image.imageTag}") flake.packages;
}
