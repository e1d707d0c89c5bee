"""The workbench's default SAE suite, prepared once per model on the first start and cached.

``plan`` chooses the sizes from the model's shape, ``cache`` says where the suite lives and whether a cached
one can be trusted, ``build`` records and trains it (in a low-priority child process of the server) with the
library's own suite trainer (:func:`neuroscope.sae.suite.train_suite`).
"""
