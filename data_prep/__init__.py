"""Data prep CLI: prompt collections to verl parquet with constraint specs (`python -m data_prep`)."""
