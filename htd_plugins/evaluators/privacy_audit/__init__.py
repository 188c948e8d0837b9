"""The ``privacy`` evaluator's audit: options and entries, distances, computation, figures and report section."""
