"""Drives the stack's three web UIs in headless Chromium, as a user would click through them.

Usage: check_uis.py CART_URL ORDER_URL REGISTRY_URL SCREENSHOT_DIR
Run by tests/browser.rs against a stack launched with `stack up`. Checks:
  1. CartService /docs lists every documented operation; "Try it out" + "Execute" on
     create-order with the documented example answers 201 with the order, which OrderService
     then serves.
  2. OrderService /docs lists every documented operation; "Try it out" + "Execute" on
     order-details for that order answers 200.
  3. The registry /ui lists the subject order-events-value; clicking it shows versions 1 and 2
     (2 registered here through the REST API) and each version's schema text.
Prints one line per check. On the first failure it saves a PNG screenshot and the page source
into SCREENSHOT_DIR, prints their paths and exits non-zero.

Environment: CHROMIUM (default /usr/bin/chromium), CHROMEDRIVER (default /usr/bin/chromedriver).
The driver path is always given, so Selenium never tries to download one.
"""

import contextlib
import json
import os
import re
import sys
import tempfile
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

CART, ORDER, REGISTRY, SHOTS = (u.rstrip("/") for u in sys.argv[1:5])
SUBJECT = "order-events-value"
SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "schemas", "order-event.avsc")
NEW_FIELD = "browserCheckNote"
WAIT = 20  # seconds for the page to render something
EXECUTE_WAIT = 45  # seconds for a "Try it out" request to answer (order-details may wait)


class CheckFailed(Exception):
    pass


def check(name, condition, detail=""):
    if not condition:
        raise CheckFailed(f"{name}: {detail}")
    print(f"ok   {name}")


def http(method, url, body=None, content_type="application/json"):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def start_browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
        f"--user-data-dir={profile}",
    ]:
        options.add_argument(flag)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    return driver


@contextlib.contextmanager
def step(driver, name):
    """Runs one part of the check; on any failure saves the page and re-raises."""
    print(f"---- {name}")
    try:
        yield
    except Exception:
        os.makedirs(SHOTS, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
        png = os.path.join(SHOTS, f"{slug}.png")
        html = os.path.join(SHOTS, f"{slug}.html")
        try:
            driver.save_screenshot(png)
            with open(html, "w", encoding="utf-8") as f:
                f.write(driver.page_source)
            print(f"screenshot: {png}")
            print(f"page source: {html}")
            print(f"page URL: {driver.current_url}")
        except Exception as e:  # the browser itself may be gone
            print(f"could not save the page: {e}")
        print(f"FAIL in step '{name}'")
        raise


def wait(driver, what, condition, timeout=WAIT):
    """Waits until `condition` holds; a timeout fails the check naming `what` was awaited."""
    try:
        return WebDriverWait(driver, timeout).until(condition)
    except TimeoutException:
        raise CheckFailed(f"timed out after {timeout} s waiting for {what}") from None


def text(element):
    """The text of an element whether or not it is scrolled into view."""
    return element.get_attribute("textContent") or ""


# ---------- Swagger UI ----------


def documented_operations(base):
    status, body = http("GET", f"{base}/api-docs/openapi.json")
    check(f"{base}/api-docs/openapi.json answers", status == 200, f"HTTP {status}: {body[:300]}")
    spec = json.loads(body)
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return spec, sorted(
        (method, path) for path, item in spec["paths"].items() for method in item if method in methods
    )


def open_docs(driver, base, required):
    """Opens /docs, checks it renders every operation of the spec (and `required`), returns the spec."""
    driver.get(f"{base}/docs")
    check("/docs redirects to /docs/", driver.current_url.startswith(f"{base}/docs/"), driver.current_url)
    spec, operations = documented_operations(base)
    for operation in required:
        check(f"the spec documents {operation[0].upper()} {operation[1]}", operation in operations, str(operations))
    wait(driver, "the operations", EC.presence_of_element_located((By.CSS_SELECTOR, ".opblock .opblock-summary-path")))
    title = wait(driver, "the API title", EC.visibility_of_element_located((By.CSS_SELECTOR, ".information-container .title")))
    check("the page shows the API title", spec["info"]["title"] in title.text, title.text)
    for method, path in operations:
        blocks = driver.find_elements(
            By.CSS_SELECTOR, f'.opblock.opblock-{method} .opblock-summary-path[data-path="{path}"]'
        )
        check(f"the page lists {method.upper()} {path}", len(blocks) == 1, f"{len(blocks)} blocks")
    shown = len(driver.find_elements(By.CSS_SELECTOR, ".opblock"))
    check("the page lists nothing undocumented", shown == len(operations), f"{shown} blocks for {len(operations)} operations")
    return spec


def opblock(driver, method, path):
    summary = driver.find_element(
        By.CSS_SELECTOR, f'.opblock.opblock-{method} .opblock-summary-path[data-path="{path}"]'
    )
    return summary.find_element(By.XPATH, "./ancestor::div[contains(concat(' ', @class, ' '), ' opblock ')][1]")


def expand_and_try(driver, method, path):
    """Expands an operation and clicks "Try it out"; returns the operation's element."""
    block = opblock(driver, method, path)
    control = block.find_element(By.CSS_SELECTOR, ".opblock-summary-control")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", control)
    control.click()
    try_out = wait(driver, "the 'Try it out' button", lambda d: block.find_element(By.CSS_SELECTOR, "button.try-out__btn"))
    wait(driver, "the 'Try it out' button to be clickable", EC.element_to_be_clickable(try_out))
    check(f"{method.upper()} {path} expands with a 'Try it out' button", "Try it out" in try_out.text, try_out.text)
    try_out.click()
    wait(driver, "the 'Execute' button", lambda d: block.find_elements(By.CSS_SELECTOR, "button.execute"))
    return block


def execute(driver, block):
    """Clicks "Execute" and returns (status code, response body) as the page shows them."""
    shown = block.find_elements(By.CSS_SELECTOR, ".live-responses-table")
    if shown:  # clear the previous answer so the one read below is this request's
        block.find_element(By.CSS_SELECTOR, "button.btn-clear").click()
        wait(driver, "the previous response to clear", EC.staleness_of(shown[0]))
    button = block.find_element(By.CSS_SELECTOR, "button.execute")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()
    status = wait(
        driver,
        "the server response of 'Execute'",
        lambda d: text(block.find_element(By.CSS_SELECTOR, ".live-responses-table .response .response-col_status")).strip()
        or False,
        EXECUTE_WAIT,
    )
    body = block.find_element(
        By.CSS_SELECTOR, ".live-responses-table .response .response-col_description .highlight-code"
    )
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", body)
    return status, text(body)


def set_input(driver, element, value):
    element.clear()
    element.send_keys(value)
    wait(driver, f"the input to hold {value!r}", lambda d: element.get_attribute("value") == value)


def check_cart_docs(driver):
    open_docs(driver, CART, [("post", "/api/create-order"), ("put", "/api/update-order")])
    block = expand_and_try(driver, "post", "/api/create-order")
    textarea = wait(driver, "the request body editor", lambda d: block.find_element(By.CSS_SELECTOR, "textarea.body-param__text"))
    example = textarea.get_attribute("value")
    try:
        order_id = json.loads(example)["orderId"]
    except (ValueError, KeyError) as e:
        raise CheckFailed(f"the request body is not the documented example ({e}): {example!r}")
    print(f"     request body (the spec's example, unchanged): {' '.join(example.split())}")
    status, body = execute(driver, block)
    check("Execute on create-order answers 201", status == "201", f"status {status}, body {body[:500]}")
    check("the shown response body carries the orderId", f'"{order_id}"' in body, body[:500])
    check("the shown response body says success", re.search(r'"success"\s*:\s*true', body) is not None, body[:500])
    status, body = http("GET", f"{ORDER}/api/order-details?orderId={order_id}&waitMs=10000")
    check(f"OrderService serves order {order_id}", status == 200, f"HTTP {status}: {body[:500]}")
    # Every other documented example works too.
    selects = block.find_elements(By.CSS_SELECTOR, ".opblock-section-request-body .examples-select select")
    names = [o.get_attribute("value") for o in Select(selects[0]).options] if selects else []
    print(f"     documented request examples: {names}")
    for name in names[1:]:
        Select(block.find_element(By.CSS_SELECTOR, ".opblock-section-request-body .examples-select select")).select_by_value(name)
        wait(driver, f"the body editor to show example '{name}'", lambda d: textarea_value(block) != example)
        other = textarea_value(block)
        other_id = json.loads(other)["orderId"]
        status, body = execute(driver, block)
        check(f"Execute with example '{name}' answers 201", status == "201", f"status {status}, body {body[:500]}")
        check(f"the shown response body carries {other_id}", f'"{other_id}"' in body, body[:500])
    return order_id


def textarea_value(block):
    return block.find_element(By.CSS_SELECTOR, "textarea.body-param__text").get_attribute("value")


def check_order_docs(driver, order_id):
    open_docs(
        driver,
        ORDER,
        [("get", "/api/order-details"), ("get", "/api/orders"), ("get", "/api/getAllOrderIdsFromTopic")],
    )
    block = expand_and_try(driver, "get", "/api/order-details")
    field = wait(
        driver, "the orderId input", lambda d: block.find_element(By.CSS_SELECTOR, 'tr[data-param-name="orderId"] input')
    )
    set_input(driver, field, order_id)
    prefilled = {
        row.get_attribute("data-param-name"): row.find_element(By.CSS_SELECTOR, "input").get_attribute("value")
        for row in block.find_elements(By.CSS_SELECTOR, "tr[data-param-name]")
    }
    print(f"     parameters as the page fills them: {prefilled}")
    status, body = execute(driver, block)
    check("Execute on order-details answers 200", status == "200", f"status {status}, body {body[:500]}")
    check("the shown response body carries the orderId", f'"{order_id}"' in body, body[:500])


# ---------- registry UI ----------


def register_second_version():
    status, body = http("GET", f"{REGISTRY}/subjects/{SUBJECT}/versions")
    check(f"{SUBJECT} has exactly version 1 before the check", status == 200 and json.loads(body) == [1], f"HTTP {status}: {body}")
    with open(SCHEMA_FILE, encoding="utf-8") as f:
        schema = json.load(f)
    schema["fields"].append(
        {"name": NEW_FIELD, "type": ["null", "string"], "default": None, "doc": "Added by the browser test."}
    )
    status, body = http(
        "POST",
        f"{REGISTRY}/subjects/{SUBJECT}/versions",
        {"schema": json.dumps(schema)},
        content_type="application/vnd.schemaregistry.v1+json",
    )
    check("a backward-compatible version 2 registers", status == 200 and "id" in json.loads(body), f"HTTP {status}: {body}")


def schema_shown(driver, version):
    wait(
        driver,
        f"#schema to show version {version}",
        lambda d: f"version {version}" in d.find_element(By.ID, "schema-heading").text
        and "OrderEvent" in text(d.find_element(By.ID, "schema")),
    )
    return text(driver.find_element(By.ID, "schema"))


def check_registry_ui(driver):
    register_second_version()
    driver.get(f"{REGISTRY}/ui")
    link = wait(
        driver,
        f"{SUBJECT} in the subject list",
        EC.element_to_be_clickable((By.CSS_SELECTOR, f'#subjects a[data-subject="{SUBJECT}"]')),
    )
    check(f"the subject list shows {SUBJECT}", link.text == SUBJECT, link.text)
    link.click()
    wait(driver, "the subject's title", EC.text_to_be_present_in_element((By.ID, "subject-title"), SUBJECT))
    wait(driver, "two versions in #versions", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#versions a[data-version]")) >= 2)
    versions = [a.get_attribute("data-version") for a in driver.find_elements(By.CSS_SELECTOR, "#versions a[data-version]")]
    check("the versions list shows versions 2 and 1", sorted(versions) == ["1", "2"], str(versions))
    latest = schema_shown(driver, 2)
    check("the latest (version 2) schema text is shown", NEW_FIELD in latest and '"orderId"' in latest, latest[:300])
    driver.find_element(By.CSS_SELECTOR, '#versions a[data-version="1"]').click()
    wait(driver, "the URL of version 1", lambda d: d.current_url.endswith(f"/subjects/{SUBJECT}/versions/1"))
    first = schema_shown(driver, 1)
    check("version 1's schema text is shown on click", NEW_FIELD not in first and '"totalAmount"' in first, first[:300])
    summary = wait(driver, "the comparison summary", EC.visibility_of_element_located((By.ID, "diff-summary")))
    check("the comparison shows the added field", "+" in summary.text and NEW_FIELD in text(driver.find_element(By.ID, "diff")), summary.text)
    error = driver.find_element(By.ID, "error")
    check("the page shows no error", not error.is_displayed(), text(error))


def main():
    with tempfile.TemporaryDirectory(prefix="browser-check-") as profile:
        driver = start_browser(profile)
        try:
            with step(driver, "CartService docs"):
                order_id = check_cart_docs(driver)
            with step(driver, "OrderService docs"):
                check_order_docs(driver, order_id)
            with step(driver, "registry UI"):
                check_registry_ui(driver)
        finally:
            driver.quit()
    print("browser checks passed")


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print(f"FAIL {e}")
        sys.exit(1)
    except TimeoutException as e:
        traceback.print_exc()
        print(f"FAIL timed out: {e.msg or 'see the traceback above'}")
        sys.exit(1)
