# nixpkgs config for this flake.
#
# Reflex 0.9.2 needs Node >= 20.19 and runs on Node 20; Node 20 reached end of life on 2026-04-30,
# so nixos-26.05 marks nodejs_20 insecure. The permit names Node 20 alone (by name and major
# version, not by a patch version that a channel bump would change): any other insecure package
# still fails evaluation. Moving to Reflex >= 0.9.3 means nodejs_22 and deleting this permit.
{ lib }:
{
  allowInsecurePredicate =
    pkg:
    builtins.elem (lib.getName pkg) [
      "nodejs"
      "nodejs-slim"
    ]
    && lib.versions.major (lib.getVersion pkg) == "20";
}
