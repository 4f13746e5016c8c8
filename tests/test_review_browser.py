"""The review widget's keyboard in JupyterLab 4 (headless Chromium, the fixtures of
``test_browser.py``): with the mouse over the widget, ``a`` / ``r`` / space / arrows / ``u``
decide rows, and JupyterLab's own shortcuts (``a`` inserts a cell) never see them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from models_support import PHOTOS
from test_browser import (  # noqa: F401 - chromium and jupyterlab are fixtures
    ALL_CELLS_RAN,
    CHROMIUM_ARGS,
    RUN_TIMEOUT_MS,
    Lab,
    cell_output,
    chromium,
    jupyterlab,
    lab_page,
    run_all_cells,
    screenshot_dir,
    wait_for_kernel,
)

pytestmark = pytest.mark.browser

#: Three rows with real files: photos and cut-outs (left half transparent), risk ranks row 1
#: worst, then row 2, then row 0.
SETUP = """\
import numpy as np, pandas as pd
from PIL import Image
import bgcut_nb

rows = []
for i, risk in enumerate([0.2, 0.9, 0.5]):
    Image.new("RGB", (400, 200), (10 + 60 * i, 120, 40)).save(f"photo{i}.jpg")
    rgba = np.zeros((200, 400, 4), np.uint8)
    rgba[:, 200:] = (255, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(f"cut{i}.png")
    rows.append({"path": f"photo{i}.jpg", "cut_url": "", "cut_path": f"cut{i}.png",
                 "bgcut_error": "", "bgcut_risk": risk})
df = pd.DataFrame(rows)
"""
SHOW = 'w = df.bgcut.review("cut", base_dir=".")\nw'
CHECK = 'print("decisions:", w.frame["bgcut_review"].tolist())'


def write_notebook(path: Path, cells: list[str]) -> None:
    code = [
        {"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None}
        for c in cells
    ]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb = {"cells": code, "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))


def test_review_keyboard_in_jupyterlab(chromium: Path, jupyterlab: Lab):  # noqa: F811
    from playwright.sync_api import expect

    write_notebook(jupyterlab.root / "notebooks" / "review-keys.ipynb", [SETUP, SHOW, CHECK])
    with lab_page(chromium, 1400, "review-failure", console=False) as (page, shots):
        book = run_all_cells(page, jupyterlab, "review-keys.ipynb")
        review = page.locator(".bgcut-review")
        expect(review).to_be_visible(timeout=60_000)
        progress = review.locator(".bgcut-review-progress")
        expect(progress).to_contain_text("0 of 3 reviewed, 0 rejected")
        expect(review).to_contain_text("row 1 of 3: 1 · photo1.jpg")  # the riskiest first
        cells = book.locator(".jp-Cell").count()

        review.hover()  # the keys are the widget's while the pointer is over it
        page.keyboard.press("a")  # row 1 approved
        expect(progress).to_contain_text("1 of 3 reviewed, 0 rejected")
        page.keyboard.press("r")  # row 2 rejected
        expect(progress).to_contain_text("2 of 3 reviewed, 1 rejected")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("u")  # row 2 undecided again
        expect(progress).to_contain_text("1 of 3 reviewed, 0 rejected")
        page.keyboard.press(" ")  # skip to row 0
        page.keyboard.press("r")
        expect(progress).to_contain_text("2 of 3 reviewed, 1 rejected")
        expect(review).to_contain_text("row 3 of 3 (the last): 0 · photo0.jpg")
        assert book.locator(".jp-Cell").count() == cells  # no key reached JupyterLab
        review.screenshot(path=shots / "review.png")

        # the kernel's frame has the decisions (run the last cell again)
        last = book.locator(".jp-CodeCell").nth(2)
        last.locator(".jp-InputArea").click()
        page.keyboard.press("Control+Enter")
        expect(last.locator(".jp-OutputArea")).to_contain_text(
            "decisions: ['rejected', 'approved', '']", timeout=60_000
        )


def test_dataset_workflow_in_jupyterlab(chromium: Path, jupyterlab: Lab):  # noqa: F811
    """Issue 21's path for a new user: the benchmark photos plus a missing file, drafted
    locally by ``notebooks/review.ipynb``, reviewed by keyboard worst first, then the approved
    rows' COCO file and an ``amazon-main`` set that passes ``check``; restarting the kernel and
    running the notebook again keeps every decision."""
    import shutil

    from playwright.sync_api import expect
    from pycocotools.coco import COCO

    from bgcut_nb.dataset.compliance import check_image
    from bgcut_nb.dataset.presets import preset

    data = jupyterlab.root / "data"
    photos = sorted(PHOTOS.glob("*")) if PHOTOS.is_dir() else sorted(data.glob("*.[pj]*g"))
    for photo in photos:
        if photo.parent != data:
            shutil.copy(photo, data / photo.name)
    names = [p.name for p in photos] + ["missing-photo.jpg"]
    (data / "images.csv").write_text("path\n" + "\n".join(names) + "\n")
    with lab_page(chromium, 1400, "review-failure", console=False) as (page, shots):
        book = run_all_cells(page, jupyterlab, "review.ipynb")
        review = page.locator(".bgcut-review")
        expect(review).to_be_visible(timeout=60_000)
        progress = review.locator(".bgcut-review-progress")
        rows = len(names)
        expect(progress).to_contain_text(f"0 of {rows} reviewed, 0 rejected")
        position = review.locator(".widget-html", has_text=re.compile(r"^row \d+ of"))
        review.hover()  # the keys are the widget's while the pointer is over it
        risks: list[float] = []
        for step in range(rows):
            expect(position).to_contain_text(f"row {step + 1} of {rows}")
            text = position.inner_text()
            risk = re.search(r"risk (\d+\.\d+)", text)
            if step == 0:
                review.screenshot(path=shots / "review-worst-first.png")
            if risk is None:  # the missing file: no cut-out, no risk, last
                assert "missing-photo.jpg" in text
                page.keyboard.press(" ")
                continue
            risks.append(float(risk.group(1)))
            page.keyboard.press("r" if step == 0 else "a")
        assert len(risks) == len(photos) and risks == sorted(risks, reverse=True), risks
        approved = len(photos) - 1
        expect(progress).to_contain_text(f"{approved + 1} of {rows} reviewed, 1 rejected")

        # the cells after the widget again: decisions, estimate, final, exports, amazon
        last_prompt = book.locator(".jp-CodeCell .jp-InputPrompt").last
        before = last_prompt.inner_text()
        book.locator(".jp-CodeCell", has_text="reviewed = draft.bgcut.reviewed").locator(
            ".jp-InputPrompt"
        ).click()
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(
            ".lm-Menu-item", has_text=re.compile(r"^Run Selected Cell and All Below")
        ).click()
        page.wait_for_function(
            "([el, old]) => el.textContent.trim() !== old"
            " && /^\\[\\d+\\]:$/.test(el.textContent.trim())",
            arg=[last_prompt.element_handle(), before],
            timeout=RUN_TIMEOUT_MS,
            polling=500,
        )
        page.wait_for_function(ALL_CELLS_RAN, timeout=RUN_TIMEOUT_MS, polling=500)
        assert not book.locator('[data-mime-type="application/vnd.jupyter.error"]').count()
        out = jupyterlab.root / "output" / "review"
        coco = COCO(str(out / "coco.json"))
        assert len(coco.anns) == approved and len(coco.imgs) == approved
        spec = preset("amazon-main")
        canvases = sorted((out / "amazon-main").glob("*.jpg"))
        assert len(canvases) == approved
        for canvas in canvases:
            assert check_image(canvas, spec).ok, check_image(canvas, spec)
        expect(cell_output(page, book, 'checked[["path"')).not_to_contain_text("False")

        # a restarted kernel, the whole notebook again: every decision is still there
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Kernel$")).click()
        page.locator(
            ".lm-Menu-item", has_text=re.compile(r"^Restart Kernel and Run All Cells")
        ).click()
        page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
        expect(page.locator(".bgcut-review")).to_have_count(0, timeout=60_000)
        review = page.locator(".bgcut-review")
        expect(review.locator(".bgcut-review-progress")).to_contain_text(
            f"{approved + 1} of {rows} reviewed, 1 rejected", timeout=RUN_TIMEOUT_MS
        )
        page.wait_for_function(ALL_CELLS_RAN, timeout=RUN_TIMEOUT_MS, polling=500)
        expect(cell_output(page, book, 'checked[["path"')).not_to_contain_text("False")
        page.screenshot(path=shots / "review-notebook.png")
