"""A reviewer reads in the MLflow UI why a festival challenger was promoted past the shift gate (ADR 0032).

The festival scenario of ``tests/integration/test_promotion.py`` runs against the session's real
``mlflow server``; then headless Chromium opens the pair's registered model page, clicks the
promoted version's link, and reads the version page: its description's first line carries the
decision's summary with the "earned" reason, the way a reviewer finds it. Screenshots go to
``test-results/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import WAIT_SECONDS, chromium, settled, wait_for_text
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.test_promotion import FAMILY, REGION, festival

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile."""
    yield from chromium(tmp_path / "chromium-profile")


def test_the_version_page_says_the_festival_challenger_earned_its_shift(
    tmp_path: Path, mlflow_uri: str, browser: WebDriver
) -> None:
    config, client, champion, decision = festival(tmp_path, mlflow_uri, earned=0.05)
    assert decision.outcome == "promoted", decision.summary
    name = config.mlflow.model_name(FAMILY, REGION)
    first_line = client.get_model_version(name, decision.version).description.splitlines()[0]
    assert "earned: holdout_logloss" in first_line, first_line

    browser.get(f"{mlflow_uri}/#/models/{name}")
    wait_for_text(browser, [name, f"Version {decision.version}", f"Version {champion}"], "mlflow-model-versions.png")
    link = WebDriverWait(browser, WAIT_SECONDS).until(
        settled(expected_conditions.element_to_be_clickable((By.LINK_TEXT, f"Version {decision.version}")))
    )
    assert not isinstance(link, bool)
    link.click()

    text = wait_for_text(browser, ["earned: holdout_logloss", "better, >= 5%"], "mlflow-festival-version.png")
    assert f"/versions/{decision.version}" in browser.current_url, browser.current_url
    # The page shows the decision's summary as the version's description: promoted against the champion,
    # the gate past its bound and why it passed.
    for part in (f"promoted (against champion v{champion})", "prediction PSI vs champion", "earned: holdout_logloss"):
        assert part in text, f"{part!r} is not on the version page:\n{text[:2000]}"
