# `import nixpkgs { system; config; }` for tests/nix/flake-eval.nix: the stand-in, on the real
# nixpkgs.lib. Only meaningful where tests/test_nix.py stages it (beside ../sources).
args:
import ../nixpkgs-standin.nix (
  {
    lib = import ../sources/nixpkgs-lib/lib;
    signatures = import ../signatures.nix;
  }
  // args
)
