"""python -m segmentation.publish.views: rewrite sql/views/ (the reference copies) from the generator."""

from pathlib import Path

from segmentation.dataset import MALL
from segmentation.publish.views import reference_copies

folder = Path(__file__).resolve().parents[3] / "sql" / "views"
for view_name, text in reference_copies(MALL).items():
    (folder / f"{view_name}.sql").write_text(text)
