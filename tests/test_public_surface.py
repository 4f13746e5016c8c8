"""The public surface: one error tree, and Dask taking what pandas takes."""

from __future__ import annotations

import inspect

import pandas as pd
import pytest

import bgcut_nb
from bgcut_nb.notebook.accessor import BgcutFrameAccessor

#: pandas options the Dask accessor does not offer (none: it takes every one).
NOT_ON_DASK: set[str] = set()


def test_an_unclear_image_column_is_a_bgcut_error_and_still_a_key_error():
    with pytest.raises(bgcut_nb.ImageColumnError) as caught:
        pd.DataFrame({"a": [1]}).bgcut.process([{"variant_name": "x"}])
    assert isinstance(caught.value, bgcut_nb.BgcutError)
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, ValueError)
    assert "ImageColumnError" in bgcut_nb.__all__


def test_dask_accepts_every_pandas_option_of_process():
    pytest.importorskip("dask.dataframe")
    from bgcut_nb.notebook.dask_accessor import BgcutDaskAccessor

    pandas_options = set(inspect.signature(BgcutFrameAccessor.process).parameters) - {"self"}
    dask_options = set(inspect.signature(BgcutDaskAccessor.process).parameters) - {"self"}
    assert pandas_options - NOT_ON_DASK <= dask_options, pandas_options - dask_options
