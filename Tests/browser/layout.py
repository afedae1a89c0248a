"""Checks the console's layout in a real browser (Debian's chromium through selenium).

Run by OnboardingServiceTests against a real `sluice run`:
    layout.py BASE_URL ARTIFACTS_DIR TRANSFORM_ID
At 1280 and 1600 px wide it loads every page (the overview, client acme's page, the transform
TRANSFORM_ID, the audit and the upload page), and lists every table container (and the page
itself) that would need a horizontal scroll. It also reads how the overview shows the
last error, the client page's version count (and that of its second page) and the transforms'
reasons. Screenshots go to ARTIFACTS_DIR. Prints one JSON line with what it saw.
"""
import json
import os
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

import chromium

base, artifacts, transform_id = sys.argv[1:4]
PAGES = {"overview": "/", "client": "/clients/acme", "transform": "/transforms/" + transform_id, "audit": "/audit", "upload": "/upload"}
os.makedirs(artifacts, exist_ok=True)

driver, wait = chromium.start()
OVERFLOW = """
return [...document.querySelectorAll('.scroll'), document.documentElement]
  .filter(e => e.scrollWidth > e.clientWidth + 1)
  .map(e => (e.querySelector('h1, th') || e).textContent.slice(0, 40) + ' ' + e.scrollWidth + '>' + e.clientWidth);
"""
seen = {}
try:
    for width in (1280, 1600):
        driver.set_window_size(width, 900)
        overflow = []
        for name, page in PAGES.items():
            driver.get(base + page)
            wait.until(EC.presence_of_element_located((By.TAG_NAME, "h1")))
            overflow += [page + ": " + o for o in driver.execute_script(OVERFLOW)]
            driver.save_screenshot(os.path.join(artifacts, "%s-%d.png" % (name, width)))
        seen["overflow_%d" % width] = overflow

    driver.set_window_size(1280, 900)
    driver.get(base + "/")
    wait.until(EC.presence_of_element_located((By.TAG_NAME, "table")))
    seen["current_errors"] = len(driver.find_elements(By.CSS_SELECTOR, ".current-error"))
    past = driver.find_elements(By.CSS_SELECTOR, ".past-error")
    seen["past_errors"] = len(past)
    seen["past_error_text"] = past[0].text if past else ""

    driver.get(base + "/clients/acme")
    wait.until(EC.presence_of_element_located((By.ID, "version-count")))
    seen["version_count"] = driver.find_element(By.ID, "version-count").text
    seen["reasons"] = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "td.reason") if td.text]
    driver.find_element(By.ID, "older").click()
    wait.until(EC.presence_of_element_located((By.ID, "newer")))
    seen["page2_count"] = driver.find_element(By.ID, "version-count").text
    driver.save_screenshot(os.path.join(artifacts, "client-page2.png"))
finally:
    driver.quit()
print(json.dumps(seen))
