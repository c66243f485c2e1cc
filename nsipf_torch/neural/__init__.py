"""The learned interpolator of NSIPF: the CNN (``model``), the interpolator that runs it in the particle
step (``interp``), its training data from radial solutions (``data``), training and evaluation
(``training``) and the declared validity domain of a checkpoint (``validity``)."""
