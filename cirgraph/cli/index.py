"""`cirgraph index`: placeholder until the gallery lands."""
