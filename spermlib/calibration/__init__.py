"""Calibration of the fold models: fitted after training, stored beside the checkpoints, applied by inference.

* :mod:`~spermlib.calibration.detectors` — out-of-domain detectors (fit and score on the core's features);
* :mod:`~spermlib.calibration.temperature` — temperature scaling of the logits;
* :mod:`~spermlib.calibration.decision_bias` — the per-class decision bias (fit, the rule, apply);
* :mod:`~spermlib.calibration.store` — the detectors' safetensors + JSON files beside the checkpoints;
* :mod:`~spermlib.calibration.fit` — the per-fold fitting ``spermlib ood`` and ``bias`` run.

Nothing here runs a model: the fitting takes what one inference-core pass returned, so the inference layer
can apply what is stored here without a cycle.
"""
