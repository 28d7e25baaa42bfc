"""Demo tooling: synthetic user traffic with delayed ground truth, for `rollwise demo`,
end-to-end tests and soak tests. Import the submodules; this package imports nothing."""
