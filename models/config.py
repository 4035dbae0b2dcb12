"""The PreRec model's configuration (models/prerec.py): sizes, prior precisions and the extensions' switches, a
frozen dataclass validated on construction. docs/DESIGN.md explains each choice and the default."""

from __future__ import annotations

from dataclasses import dataclass, replace

SEQUENCE_MODELS = ("transformer", "gru")
PRIOR_UNITS = ("total", "per_observation", "offsets_per_observation")
PARAMETRISATIONS = ("auto", "centred", "noncentred")
TRANSFORMER_DTYPES = ("float32", "bfloat16")
TEXT_CHANNELS = ("off", "last", "last+mean")
TEXT_HEADS = ("linear", "residual")
# The default configuration (PreRecConfig.recommended, map_pretrain.py): each part justified by the model and measured
# on the sources' validation users scored by Eq. 8 and across platforms (docs/DESIGN.md).
RECOMMENDED = {"prior_units": "per_observation", "shared_item_offsets": True, "last_item_skip": True,
               "text_channel": "last", "repeat_term": True}
RECOMMENDED_POPULARITY_MODE = "sliding"


@dataclass(frozen=True)
class PreRecConfig:
    """Sizes and prior precisions (paper defaults, Table 4). λ_u is large by default: a small λ_u lets eps_u
    memorise training users (docs/DESIGN.md pitfall 3)."""

    hidden_dim: int = 256
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 64
    dropout: float = 0.1
    pop_width: int = 64
    n_factors: int = 4
    lambda_d: float = 0.3
    lambda_v: float = 100.0
    lambda_z: float = 100.0
    lambda_u: float = 1e4
    lambda_v_shared: float = 100.0
    sequence_model: str = "transformer"
    transformer_dtype: str = "float32"  # or "bfloat16": the Transformer layers under autocast (GPU)
    use_domain: bool = True
    use_popularity: bool = True
    use_offsets: bool = True
    prior_units: str = "total"  # "per_observation": every precision is λ·N_obs; "offsets_per_observation": D's not
    parametrisation: str = "auto"  # how SVI sees the latent sites; auto: non-centred under per-observation units
    shared_item_offsets: bool = False  # eps_v_shared over distinct item ids (see the module docstring)
    last_item_skip: bool = False  # n = f_seq(D_k, H) + m_last (see the module docstring)
    text_channel: str = "off"  # "last": U·V += τ·cos(X_last, X_j); "last+mean" (see the module docstring)
    text_temperature: float = 5.0  # every τ's initial value (learned)
    repeat_term: bool = False  # logits += w_r·1[item earlier in the history] (see the module docstring)
    text_dropout: float = 0.0  # dropout on the text vectors X before f_e while training (0: none)
    text_head: str = "linear"  # f_e: "linear" W·X + b; "residual": a fixed scaled projection of X plus W·X + b from 0

    def __post_init__(self):
        if self.sequence_model not in SEQUENCE_MODELS:
            raise ValueError(f"sequence_model must be one of {SEQUENCE_MODELS}, got {self.sequence_model!r}")
        for name in ("lambda_d", "lambda_v", "lambda_z", "lambda_u", "lambda_v_shared"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.transformer_dtype not in TRANSFORMER_DTYPES:
            raise ValueError(f"transformer_dtype must be one of {TRANSFORMER_DTYPES}, got {self.transformer_dtype!r}")
        if self.prior_units not in PRIOR_UNITS:
            raise ValueError(f"prior_units must be one of {PRIOR_UNITS}, got {self.prior_units!r}")
        if self.parametrisation not in PARAMETRISATIONS:
            raise ValueError(f"parametrisation must be one of {PARAMETRISATIONS}, got {self.parametrisation!r}")
        if self.text_channel not in TEXT_CHANNELS:
            raise ValueError(f"text_channel must be one of {TEXT_CHANNELS}, got {self.text_channel!r}")
        if not self.text_temperature > 0:
            raise ValueError(f"text_temperature must be > 0, got {self.text_temperature}")
        if not 0.0 <= self.text_dropout < 1.0:
            raise ValueError(f"text_dropout must be in [0, 1), got {self.text_dropout}")
        if self.text_head not in TEXT_HEADS:
            raise ValueError(f"text_head must be one of {TEXT_HEADS}, got {self.text_head!r}")
        if self.hidden_dim % self.n_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} must be divisible by n_heads {self.n_heads}")

    @classmethod
    def recommended(cls, **changes) -> "PreRecConfig":
        """The library's default configuration (``scripts/map_pretrain.py``'s defaults): Eq. 6 with per-observation
        priors, shared item offsets, the last-item skip, the text channel and the repeat term (docs/DESIGN.md, "The
        default configuration").
        ``PreRecConfig()`` itself is Eq. 6 with Eq. 7 read literally."""
        return cls(**{**RECOMMENDED, **changes})

    def ablation(self) -> "PreRecConfig":
        """PreRec_n: the same model without D, Z/popularity and offsets."""
        return replace(self, use_domain=False, use_popularity=False, use_offsets=False, shared_item_offsets=False)

    @property
    def noncentred(self) -> bool:
        """Whether SVI fits the latent sites in non-centred form (value = prior std x a standard normal draw).
        Under per-observation units a prior std is about 1e-4: Adam's steps of about ``lr`` per coordinate would
        throw a centred site far outside its prior (and its prior gradient would swamp the networks' in gradient
        clipping); in non-centred form every site is on the unit scale. The MAP point is the same (the map is
        linear)."""
        if self.parametrisation == "auto":
            return self.prior_units != "total"
        return self.parametrisation == "noncentred"
