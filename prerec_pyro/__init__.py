"""prerec-pyro: PreRec (Lin et al., WSDM 2024) as a Pyro probabilistic program.

The public API is imported on first use: ``from prerec_pyro import PretrainedRun`` (``prerec_pyro.api``: load a
run, recommend on a new catalogue) and ``from prerec_pyro import pretrain, run_config, resume_pretraining``
(``prerec_pyro.inference.pretraining``: a configuration in, a finished run directory out).
"""

_API = ("DomainRecommender", "PretrainedRun")
_PRETRAINING = ("RunConfig", "pretrain", "resume_pretraining", "run_config")
__all__ = [*_API, *_PRETRAINING]


def __getattr__(name: str):
    if name in _API:
        from prerec_pyro import api

        return getattr(api, name)
    if name in _PRETRAINING:
        from prerec_pyro.inference import pretraining

        return getattr(pretraining, name)
    raise AttributeError(f"module 'prerec_pyro' has no attribute {name!r}")
