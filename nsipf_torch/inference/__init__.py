"""Parameter inference: the observed-density format (``observations``) and the fit of chi and gamma by
differentiating through the finite-volume solver (``fit``)."""
