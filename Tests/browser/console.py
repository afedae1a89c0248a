"""Drives the web console in a real browser (Debian's chromium through selenium).

Run by ConsoleTests against a real `sluice run`:
    console.py BASE_URL ARTIFACTS_DIR UPLOAD_FILE FAILED_TRANSFORM_ID
It loads the overview, uploads UPLOAD_FILE through the upload page and waits for its version,
opens the client page, and re-runs the failed transform (the test fixed the mapping first).
Screenshots of each page go to ARTIFACTS_DIR. Prints one JSON line with what it saw.
"""
import json
import os
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

import chromium

base, artifacts, upload_file, failed_id = sys.argv[1:5]
os.makedirs(artifacts, exist_ok=True)

driver, wait = chromium.start()
seen = {}
try:
    # The overview: one row per client and source, a chart per client.
    driver.get(base + "/")
    wait.until(EC.presence_of_element_located((By.TAG_NAME, "table")))
    seen["overview_title"] = driver.find_element(By.TAG_NAME, "h1").text
    seen["overview_rows"] = [
        [td.text.split()[0] for td in tr.find_elements(By.TAG_NAME, "td")[:2]]
        for tr in driver.find_elements(By.CSS_SELECTOR, "main table tbody tr")
    ]
    seen["charts"] = len(driver.find_elements(By.CSS_SELECTOR, ".card svg"))
    seen["local_times"] = len(driver.find_elements(By.CSS_SELECTOR, "time .local"))
    driver.save_screenshot(os.path.join(artifacts, "overview.png"))
    driver.set_window_size(390, 844)
    driver.save_screenshot(os.path.join(artifacts, "overview-phone.png"))
    driver.set_window_size(1280, 900)

    # The upload page: pick the target and the file, watch the progress and the version.
    driver.get(base + "/upload")
    Select(driver.find_element(By.ID, "target")).select_by_value("acme/portal")
    driver.find_element(By.ID, "folder").send_keys("browser")
    driver.find_element(By.ID, "files").send_keys(upload_file)
    driver.find_element(By.CSS_SELECTOR, "#upload button").click()
    result = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#progress td[data-status]")))
    seen["upload_status"] = result.get_attribute("data-status")
    seen["upload_result"] = result.text
    seen["upload_progress"] = driver.find_element(By.CSS_SELECTOR, "#progress progress").get_attribute("value")
    driver.save_screenshot(os.path.join(artifacts, "upload.png"))

    # The client page shows the new version with a download link.
    driver.get(base + "/clients/acme")
    wait.until(EC.presence_of_element_located((By.TAG_NAME, "table")))
    seen["client_paths"] = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "main table:first-of-type tbody td.mono")]
    seen["client_downloads"] = len(driver.find_elements(By.LINK_TEXT, "download"))
    driver.save_screenshot(os.path.join(artifacts, "client.png"))

    # The failed transform: its reason and rejected rows, then Re-run.
    driver.get(base + "/transforms/" + failed_id)
    wait.until(EC.presence_of_element_located((By.TAG_NAME, "h1")))
    seen["failed_reason"] = driver.find_element(By.CSS_SELECTOR, "pre").text
    seen["rejected_rows"] = len(driver.find_elements(By.XPATH, "//h2[text()='First rejected rows']/following-sibling::div[1]//tbody/tr"))
    driver.save_screenshot(os.path.join(artifacts, "failed-transform.png"))
    driver.find_element(By.XPATH, "//button[contains(., 'Re-run')]").click()
    wait.until(EC.url_contains("rerun="))
    seen["rerun_url"] = driver.current_url
    seen["rerun_status"] = driver.find_element(By.CSS_SELECTOR, ".pill").text
    driver.save_screenshot(os.path.join(artifacts, "rerun.png"))

    driver.get(base + "/audit")
    seen["audit"] = driver.find_element(By.CSS_SELECTOR, ".card").text
    driver.save_screenshot(os.path.join(artifacts, "audit.png"))
finally:
    driver.quit()
print(json.dumps(seen))
