// Drives the fieldsync dashboard in Debian's headless Chromium for tests/browser.rs:
// node dashboard.mjs <server url> <one-time code> <campaign id> <search phrase> <output dir>
//   <record with a photo>
// Signs in, opens the campaign and a village dossier, resolves a conflict, searches, downloads
// the XLSX and DOCX, switches to English; saves a screenshot of each step; prints a JSON summary
// (with whatever the Content-Security-Policy blocked, and a style the inline sheet sets).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [url, code, campaign, phrase, out, photoRecord] = process.argv.slice(2);
mkdirSync(out, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const summary = {};
try {
  const context = await browser.newContext({ acceptDownloads: true, locale: "zh-CN",
    viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  // Anything the Content-Security-Policy blocked (the pages must need nothing it forbids).
  summary.cspViolations = [];
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) summary.cspViolations.push(m.text());
  });
  const shot = (name) => page.screenshot({ path: join(out, name), fullPage: true });

  await page.goto(`${url}/login`);
  await shot("01-login.png");
  await page.fill("input[name=code]", code);
  await Promise.all([page.waitForURL(`${url}/ui`), page.click("button[type=submit]")]);
  await shot("02-campaigns.png");
  summary.headerBackground = await page.evaluate(
    () => getComputedStyle(document.querySelector("header")).backgroundColor);

  await page.click(`a[href="/ui/c/${campaign}"]`);
  await page.waitForSelector("text=工作进度");
  summary.overviewSvgs = await page.locator("svg").count();
  await shot("03-overview.png");

  const dossier = page.locator(`a[href^="/ui/c/${campaign}/v/"]`).first();
  summary.village = await dossier.textContent();
  const dossierHref = await dossier.getAttribute("href");
  await dossier.click();
  await page.waitForSelector("h1:has-text('村情档案')");
  summary.dossierTitle = await page.locator("h1").textContent();
  summary.dossierMembers = await page.locator("h2:has-text('班子成员') + table tbody tr").count();
  // The members' table sorts by a column when its heading is clicked, and back the other way.
  const members = page.locator("h2:has-text('班子成员') + table");
  const names = () => members.locator("tbody tr td:first-child").allTextContents();
  summary.sortBefore = await names();
  await members.locator("thead th button.sort").first().click();
  summary.sortUp = await names();
  summary.sortUpAria = await members.locator("thead th").first().getAttribute("aria-sort");
  await members.locator("thead th button.sort").first().click();
  summary.sortDown = await names();
  summary.sortDownAria = await members.locator("thead th").first().getAttribute("aria-sort");
  await shot("04a-dossier-sorted.png");
  const photo = page.locator("#photos + ul.files img").first();
  await photo.scrollIntoViewIfNeeded();
  summary.dossierPhotoWidth = await photo.evaluate(
    async (img) => { await img.decode(); return img.naturalWidth; });
  await page.locator("#photos").screenshot({ path: join(out, "04b-dossier-photos-heading.png") });
  await page.locator("#photos + ul.files").screenshot({ path: join(out, "04c-dossier-photos.png") });
  await shot("04-dossier.png");

  await page.goto(`${url}/ui/c/${campaign}/conflicts`);
  const record = page.locator("a[href^='/ui/r/']").first();
  const href = await record.getAttribute("href");
  summary.record = href.split("/").pop();
  await record.click();
  const form = page.locator("form.conflict").first();
  summary.field = await form.locator("input[name=field]").getAttribute("value");
  const second = form.locator("input[name=choice]").nth(1);
  summary.chosen = (await second.locator("xpath=..").textContent()).split("—")[0].trim();
  await second.check();
  await shot("05-conflict.png");
  await Promise.all([page.waitForURL(/resolved=/), form.locator("button[type=submit]").click()]);
  summary.flash = await page.locator(".flash").textContent();
  await shot("06-resolved.png");

  await page.fill("header input[name=q]", phrase);
  await Promise.all([page.waitForURL(/search\?q=/), page.press("header input[name=q]", "Enter")]);
  summary.searchHits = await page.locator("table tbody tr").count();
  await shot("07-search.png");

  // Review: return two records with a reason at once, then read the returned ones on a phone.
  await page.goto(`${url}/ui/c/${campaign}/review`);
  summary.reviewRows = await page.locator("table tbody tr").count();
  const boxes = page.locator("input[name=id]");
  summary.returned = [await boxes.nth(0).getAttribute("value"),
                      await boxes.nth(1).getAttribute("value")];
  await boxes.nth(0).check();
  await boxes.nth(1).check();
  await page.fill("#decide textarea[name=comment]", "请补充参会人数");
  await shot("07b-review.png");
  await Promise.all([page.waitForURL(/done=2/), page.click("#decide button[value=returned]")]);
  summary.reviewFlash = await page.locator(".flash").textContent();
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${url}/ui/c/${campaign}/review?state=returned`);
  summary.returnedRows = await page.locator("table tbody tr").count();
  summary.phoneOverflow = await page.evaluate(
    () => document.documentElement.scrollWidth > window.innerWidth + 1);
  await shot("07c-review-phone.png");
  // The other pages at phone width: nothing wider than the screen (tables become cards).
  const overflows = () => page.evaluate(
    () => document.documentElement.scrollWidth > window.innerWidth + 1);
  summary.phonePages = {};
  for (const [name, path] of [
    ["overview", `/ui/c/${campaign}`],
    ["dossier", dossierHref],
    ["ledger", `/ui/c/${campaign}/ledger`],
    ["search", `/ui/c/${campaign}/search?q=${encodeURIComponent(phrase)}`],
    ["record", `/ui/r/${photoRecord}`],
  ]) {
    await page.goto(`${url}${path}`);
    summary.phonePages[name] = await overflows();
    await shot(`09-${name}-phone.png`);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  // The ledger and a record with its photo at laptop width.
  await page.goto(`${url}/ui/c/${campaign}/ledger`);
  summary.ledgerRows = await page.locator("table tbody tr").count();
  summary.ledgerCurrent = await page.locator("header a[aria-current=page]").textContent();
  await shot("10-ledger.png");
  await page.goto(`${url}/ui/c/${campaign}/ledger?overdue=1`);
  summary.ledgerOverdueRows = await page.locator("table tbody tr").count();
  await page.goto(`${url}/ui/r/${photoRecord}`);
  const preview = page.locator("ul.files img").first();
  summary.recordPhotoWidth = await preview.evaluate(
    async (img) => { await img.decode(); return img.naturalWidth; });
  await shot("11-record-photo.png");

  await page.goto(`${url}/ui/c/${campaign}`);
  summary.downloads = [];
  for (const [selector, file] of [["a[href$='export.xlsx']", "campaign.xlsx"],
                                  ["a[href$='report.docx']", "report.docx"]]) {
    const [download] = await Promise.all([page.waitForEvent("download"), page.click(selector)]);
    summary.downloads.push(download.suggestedFilename());
    await download.saveAs(join(out, file));
  }
  await page.click("text=English");
  await page.waitForSelector("text=Progress");
  summary.english = await page.locator("h2").first().textContent();
  await shot("08-english.png");
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
