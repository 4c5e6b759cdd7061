from typing import Any

import numpy as np
import numpy.typing as npt

def downsample(
    pixels: npt.NDArray[np.uint8],
    rows: int,
    cols: int,
    stride: int,
    row_inputs: npt.NDArray[np.int32],
    row_weights: npt.NDArray[np.float32],
    col_inputs: npt.NDArray[np.int32],
    col_weights: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
) -> int: ...

def downsample_arrow(
    schema: Any,
    array: Any,
    rows: int,
    cols: int,
    row_inputs: npt.NDArray[np.int32],
    row_weights: npt.NDArray[np.float32],
    col_inputs: npt.NDArray[np.int32],
    col_weights: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
) -> int: ...
