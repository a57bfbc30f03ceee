// Drives the field app in Debian's headless Chromium for app/tests/browser.rs:
// node app.mjs <launch url> <village code> <output dir>
// (PLAYWRIGHT: the path of playwright-core's index.mjs, the top-level tests' pinned copy.)
// Opens the launch address, records an interview with a 500-character Chinese note, sends a
// questionnaire with a required answer missing (the error shows at the field), then corrected,
// a document review with a photo added on its page; screenshots of every page at laptop and phone width; prints a JSON summary.
const { chromium } = await import(process.env.PLAYWRIGHT);
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [launch, village, out] = process.argv.slice(2);
const base = new URL(launch).origin;
mkdirSync(out, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const summary = { cspViolations: [], shots: [] };
try {
  const context = await browser.newContext({ locale: "zh-CN", viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) summary.cspViolations.push(m.text());
  });
  const shot = async (name) => {
    for (const [w, h, tag] of [[1280, 900, "laptop"], [390, 844, "phone"]]) {
      await page.setViewportSize({ width: w, height: h });
      const file = `${name}-${tag}.png`;
      await page.screenshot({ path: join(out, file), fullPage: true });
      summary.shots.push(file);
    }
    await page.setViewportSize({ width: 1280, height: 900 });
  };

  await page.goto(launch);
  summary.homeUrl = page.url();
  summary.headerBackground = await page.evaluate(
    () => getComputedStyle(document.querySelector("header")).backgroundColor);
  summary.villages = await page.locator(".card.village").count();
  await shot("01-home");

  await page.click(`a[href="/v/${village}"]`);
  await shot("02-village");

  await page.goto(`${base}/v/${village}/k/interview/new`);
  await page.fill("input[name='f.date']", "2026-05-18");
  await page.fill("input[name='f.interviewer']", "王组长、赵干事");
  await page.check("input[name='f.interviewee_type'][value='member']");
  await page.selectOption("select[name='f.interviewee']", { label: "张一" });
  const note = "村集体经济收入不高，群众希望发展产业项目。".repeat(25).slice(0, 500);
  await page.fill("textarea[name='f.notes']", note);
  await shot("03-interview-form");
  await Promise.all([page.waitForURL(/\/r\//), page.click("button[value=save]")]);
  summary.recordUrl = new URL(page.url()).pathname;
  summary.recordShowsNote = (await page.locator("dd").allTextContents()).includes(note);
  await shot("04-interview-saved");

  await page.goto(`${base}/v/${village}/k/questionnaire/new`);
  const fields = await page.locator(".field").evaluateAll((els) =>
    els.map((e) => e.id.replace("at-", "")));
  for (const f of fields) {
    if (f === "q_overall") continue;
    const first = page.locator(`input[type=radio][name='f.${f}']`).first();
    if (await first.count()) await first.check();
  }
  await page.click("button[value=save]");
  await page.waitForSelector("#problems");
  summary.problemAtField = await page.locator("#at-q_overall .problem").textContent();
  await shot("05-questionnaire-error");
  await page.locator("input[type=radio][name='f.q_overall']").first().check();
  await Promise.all([page.waitForURL(/\/r\//), page.click("button[value=save]")]);
  await shot("06-questionnaire-saved");

  // A document review, then a photo of the minutes added on its page (as a phone's camera
  // would hand it over: a PNG here, 4 × 4 pixels).
  await page.goto(`${base}/v/${village}/k/document_review/new`);
  await page.fill("input[name='f.date']", "2026-05-19");
  await page.fill("input[name='f.reviewer']", "王组长");
  await page.check("input[name='f.documents'][value='three_meetings_one_lesson']");
  await page.check("input[name='f.compliant'][value='no']");
  await Promise.all([page.waitForURL(/\/r\//), page.click("button[value=save]")]);
  const png = Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEElEQVR4nGM4IScHRwzEcQCxYxBBO0tjggAAAABJRU5ErkJggg==",
    "base64");
  await page.setInputFiles("#files-photos input[type=file]",
    { name: "三会一课记录.png", mimeType: "image/png", buffer: png });
  await Promise.all([page.waitForURL(/\/r\//), page.click("#files-photos button[type=submit]")]);
  await page.waitForSelector("#files-photos img");
  summary.photoFlash = await page.locator(".flash").first().textContent();
  summary.photoWidth = await page.locator("#files-photos img").first().evaluate(
    async (img) => { await img.decode(); return img.naturalWidth; });
  summary.photoState = await page.locator("#files-photos .state").first().textContent();
  await shot("07-record-photo");

  await page.goto(`${base}/lang/en`);
  summary.english = await page.locator("h2").first().textContent();
  await shot("08-english");
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
