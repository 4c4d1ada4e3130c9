"""Columnar sample batches: numpy arrays travel through the writer, never per-sample objects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from server.domain.quality import Quality


@dataclass(slots=True)
class SampleColumns:
    tag_id: npt.NDArray[np.int64]
    ts: npt.NDArray[np.float64]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int16]

    def __len__(self) -> int:
        return int(self.tag_id.shape[0])

    @classmethod
    def from_lists(cls, tag_id: list[int], ts: list[float], value: list[float], quality: list[int]) -> SampleColumns:
        return cls(
            np.asarray(tag_id, dtype=np.int64),
            np.asarray(ts, dtype=np.float64),
            np.asarray(value, dtype=np.float64),
            np.asarray(quality, dtype=np.int16),
        )

    @classmethod
    def concat(cls, parts: list[SampleColumns]) -> SampleColumns:
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.tag_id for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.value for p in parts]),
            np.concatenate([p.quality for p in parts]),
        )

    def usable(self) -> SampleColumns:
        """Samples that count in rollups: Bad values are stored raw but never averaged in."""
        keep = self.quality != int(Quality.BAD)
        if keep.all():
            return self
        return SampleColumns(self.tag_id[keep], self.ts[keep], self.value[keep], self.quality[keep])


@dataclass(slots=True)
class RawSeries:
    ts: npt.NDArray[np.float64]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int16]

    def __len__(self) -> int:
        return int(self.ts.shape[0])
