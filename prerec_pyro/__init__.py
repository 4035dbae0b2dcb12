"""prerec-pyro: PreRec (Lin et al., WSDM 2024) as a Pyro probabilistic program.

The public API (``prerec_pyro.api``) is imported on first use: ``from prerec_pyro import PretrainedRun``.
"""

__all__ = ["DomainRecommender", "PretrainedRun"]


def __getattr__(name: str):
    if name in __all__:
        from prerec_pyro import api

        return getattr(api, name)
    raise AttributeError(f"module 'prerec_pyro' has no attribute {name!r}")
