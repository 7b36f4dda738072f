"""Data prep CLI: prompt collections to verl parquet with constraint specs. Not built yet
(see the data prep issue)."""
