"""The ``crop`` and ``embedding`` builders' library: crop banks, class-region geometry,
explicit crops given by the user, and the provenance of each chosen crop."""
