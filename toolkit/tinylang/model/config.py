"""The model's configuration and its id space: bytes 0-255 plus three special ids.

Byte 0 is an ordinary byte (the reference implementation used it as padding and never learned it).

    config = MegabyteConfig(patch_size=8, context_bytes=1024, global_dim=256)
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

BOS_ID = 256  # begins every story
EOS_ID = 257  # ends every story
PAD_ID = 258  # never a real byte; ignored by the loss
VOCAB_SIZE = 259


def no_booleans_for_numbers(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A ``field_validator("*", mode="before")``: true/false are not numbers. YAML reads yes, no, on
    and off as booleans, and pydantic would take them as 1 and 0, so ``max_steps: yes`` trained for one
    step instead of failing."""
    if isinstance(value, bool) and info.field_name is not None:
        annotation = cls.model_fields[info.field_name].annotation
        if annotation is not bool and bool not in get_args(annotation):
            raise ValueError(f"{str(value).lower()} is not a valid value here (YAML reads yes, no, on and off "
                             "as true and false)")
    return value


class MegabyteConfig(BaseModel):
    """Sizes of a two-stage MEGABYTE model. Dimensions are per stage: the global model works on
    patches, the local model on the bytes inside one patch."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    _no_booleans = field_validator("*", mode="before")(no_booleans_for_numbers)

    patch_size: int = Field(8, ge=1, le=64, description="Bytes per patch (P).")
    context_bytes: int = Field(1024, ge=1, description="Longest input in bytes; a multiple of patch_size.")
    global_dim: int = Field(256, ge=8, description="Width of the global Transformer.")
    global_layers: int = Field(4, ge=1, description="Blocks in the global Transformer.")
    global_heads: int = Field(4, ge=1, description="Attention heads in the global Transformer.")
    local_dim: int = Field(128, ge=8, description="Width of the local Transformer.")
    local_layers: int = Field(2, ge=1, description="Blocks in the local Transformer.")
    local_heads: int = Field(2, ge=1, description="Attention heads in the local Transformer.")
    ff_mult: int = Field(4, ge=1, description="MLP hidden width as a multiple of the block width.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on attention and residual branches.")
    positions: Literal["rotary", "learned"] = Field(
        "rotary",
        description="Positions of the global model's patches: rotary (default) or learned embeddings. The "
        "local model always learns its patch_size positions (rotary there costs two passes over every byte).",
    )

    @model_validator(mode="after")
    def _check_shapes(self) -> "MegabyteConfig":
        problems = []
        if self.context_bytes % self.patch_size:
            problems.append(
                f"context_bytes ({self.context_bytes}) must be a multiple of patch_size ({self.patch_size})"
            )
        for stage in ("global", "local"):
            dim, heads = getattr(self, f"{stage}_dim"), getattr(self, f"{stage}_heads")
            if dim % heads:
                problems.append(f"{stage}_dim ({dim}) must be divisible by {stage}_heads ({heads})")
            elif (dim // heads) % 2 and stage == "global" and self.positions == "rotary":
                problems.append(f"{stage}_dim / {stage}_heads ({dim // heads}) must be even for rotary positions")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def max_patches(self) -> int:
        """Global positions needed to predict every byte of a full context (one more than
        context_bytes / patch_size, because output t predicts byte t + 1)."""
        return self.context_bytes // self.patch_size + 1
