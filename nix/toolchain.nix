# The interpreter and the Node the flake pins by attribute name, taken from the locked nixpkgs.
#
# A nixpkgs without one of them (a bump of the pin, a channel that dropped it) fails evaluation
# with one message naming the pin and the fix, instead of a bare "attribute missing". A package
# nixpkgs removed on purpose may instead be an alias that throws nixpkgs' own removal message.
{ pkgs, lock }:
let
  nixpkgs = lock.nodes.${lock.nodes.${lock.root}.inputs.nixpkgs};
  pin = "nixpkgs ${nixpkgs.original.ref or "(no branch)"} at ${nixpkgs.locked.rev} (flake.lock)";
  need =
    name: fix:
    if pkgs ? ${name} then
      pkgs.${name}
    else
      throw "${pin} has no `${name}` for ${pkgs.stdenv.hostPlatform.system}: ${fix} (docs/nix.md, \"When the pinned nixpkgs lacks nodejs_20 or python312\")";
in
{
  # Reflex 0.9.2 needs Node >= 20.19 (docs/nix.md, "Bumping Reflex means Node 22").
  nodejs = need "nodejs_20" "Reflex 0.9.2 builds with Node 20; lock a nixpkgs that has it, or bump Reflex and move to nodejs_22 in nix/toolchain.nix";
  # uv.lock's wheels are selected for CPython 3.12 (tests/test_nix.py, uv2nix).
  python = need "python312" "the venv is CPython 3.12; lock a nixpkgs that has it, or move to python313 here and check uv.lock's wheels with tests/test_nix.py";
}
