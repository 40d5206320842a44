"""The experiment engine, a library: declarations and their catalog, protocols and run plans,
locks, sweeps, results, tables and plots. Light to import: no torch, no Dassl."""
