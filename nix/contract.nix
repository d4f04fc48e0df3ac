# The runtime contract, read from the one file the Python package also reads (working/runtime/contract.toml).
# Every module that needs a port, a path, a uid or a variable name takes it from here.
builtins.fromTOML (builtins.readFile ../working/runtime/contract.toml)
