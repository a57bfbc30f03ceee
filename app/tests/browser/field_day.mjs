// A field worker's day in the field app, in Debian's headless Chromium, for app/tests/browser.rs:
// node field_day.mjs <settings as JSON>
// (settings: app and second launch addresses, server address, the worker's and the department's
// one-time codes, campaign, village, output dir; PLAYWRIGHT: playwright-core's index.mjs.)
// Enrolls an empty app through its own page; records an interview with a 500-character note, a
// questionnaire with a wrong answer (shown at its field, nothing saved) then corrected, an
// evaluation grid, three questionnaires with "save and new"; syncs; edits the interview while a
// second device (the Rust test, asked through a line on stdout and answered on stdin) edits it
// too, syncs, resolves the conflict with a new value and syncs again; downloads a bundle and
// uploads it into a second app; signs in to the department's dashboard and finds the interview.
// Screenshots of every page at 1280 and 390 px, each noting whether the page is wider than the
// phone's screen; prints a JSON summary as its last line.
const { chromium } = await import(process.env.PLAYWRIGHT);
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

const s = JSON.parse(process.argv[2]);
const base = new URL(s.launch).origin;
const second = new URL(s.secondLaunch).origin;
mkdirSync(s.out, { recursive: true });
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
// Asks the test to do something outside the browser and waits for its answer.
const ask = async (step, data) => {
  console.log(JSON.stringify({ step, ...data }));
  const { value, done } = await lines.next();
  if (done) throw new Error(`the test did not answer ${step}`);
  return JSON.parse(value);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const summary = { cspViolations: [], shots: [], phoneOverflow: {} };
const open = async () => {
  const context = await browser.newContext({ acceptDownloads: true, locale: "zh-CN",
    viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) summary.cspViolations.push(m.text());
  });
  return page;
};
// Both widths of the page as it is; at 390 px, whether anything is wider than the screen.
const shot = async (page, name) => {
  for (const [w, h, tag] of [[1280, 900, "laptop"], [390, 844, "phone"]]) {
    await page.setViewportSize({ width: w, height: h });
    const file = `${name}-${tag}.png`;
    await page.screenshot({ path: join(s.out, file), fullPage: true });
    summary.shots.push(file);
    if (tag === "phone") {
      summary.phoneOverflow[name] = await page.evaluate(
        () => document.documentElement.scrollWidth > window.innerWidth + 1);
    }
  }
  await page.setViewportSize({ width: 1280, height: 900 });
};
// Presses Sync on the home page and waits for the result the page tells when it ends.
const sync = async (page) => {
  await page.goto(`${base}/`);
  await page.click("form[action='/sync'] button");
  const result = page.locator("p.flash", { hasText: "已上传" });
  await result.waitFor({ timeout: 60000 });
  return (await result.textContent()).trim();
};
// Answers every radio question of the questionnaire on the page with its `n`th choice.
const answerAll = async (page, n) => {
  const names = await page.locator(".field input[type=radio]").evaluateAll(
    (els) => [...new Set(els.map((e) => e.name))]);
  for (const name of names) {
    if (name === "f.respondent_category") continue;
    const choices = page.locator(`input[type=radio][name='${name}']:not([value=''])`);
    await choices.nth(n % (await choices.count())).check();
  }
};

try {
  const page = await open();

  // First start: nothing on the device; enroll through the app's own page.
  await page.goto(s.launch);
  summary.firstStartUrl = page.url();
  summary.firstStartOffersEnroll = await page.locator("a[href='/enroll']").count() > 0;
  summary.firstStartWelcome = (await page.locator("#welcome").textContent()).trim();
  summary.firstStartErrors = await page.locator(".error").count();
  await shot(page, "01-first-start");
  await Promise.all([page.waitForURL(`${base}/enroll`), page.click("a[href='/enroll']")]);
  await page.fill("#server", s.server);
  await page.fill("#code", s.code);
  await page.fill("#name", "王组长的笔记本");
  await shot(page, "02-enroll");
  await Promise.all([page.waitForURL(`${base}/`), page.click("form[action='/enroll'] button")]);
  summary.enrolled = (await page.locator("p.flash").first().textContent()).trim();
  summary.villages = await page.locator(".card.village").count();
  summary.campaignTitle = (await page.locator("h1").first().textContent()).trim();
  summary.templateNotice = await page.locator("#template-notice").count();
  await shot(page, "03-enrolled");

  await Promise.all([page.waitForURL(`${base}/v/${s.village}`),
    page.click(`a[href="/v/${s.village}"]`)]);
  await shot(page, "04-village");

  // An interview with a 500-character note.
  await page.goto(`${base}/v/${s.village}/k/interview/new`);
  await page.fill("input[name='f.date']", "2026-05-18");
  await page.fill("input[name='f.interviewer']", "王组长、赵干事");
  await page.check("input[name='f.interviewee_type'][value='member']");
  await page.selectOption("select[name='f.interviewee']", { label: "张一" });
  const note = "村集体经济收入不高，群众希望发展产业项目。".repeat(25).slice(0, 500);
  await page.fill("textarea[name='f.notes']", note);
  await shot(page, "05-interview-form");
  await Promise.all([page.waitForURL(/\/r\//), page.click("button[value=save]")]);
  summary.interview = new URL(page.url()).pathname.replace("/r/", "");
  summary.interviewShowsNote = (await page.locator("dd").allTextContents()).includes(note);
  await shot(page, "06-interview-saved");

  // A questionnaire with a wrong answer: three priorities ticked where two at most are asked.
  const questionnaire = `${base}/v/${s.village}/k/questionnaire/new`;
  await page.goto(questionnaire);
  await page.check("input[name='f.respondent_category'][value='party_member']");
  await answerAll(page, 0);
  for (const v of ["economy", "service", "openness"]) {
    await page.check(`input[name='f.q_priorities'][value='${v}']`);
  }
  await page.fill("textarea[name='f.suggestions']", "希望多开群众会");
  await page.click("button[value=save]");
  await page.waitForSelector("#problems");
  summary.wrongUrl = new URL(page.url()).pathname;
  summary.wrongSummary = (await page.locator("#problems").textContent()).trim();
  summary.wrongAtField = (await page.locator("#at-q_priorities .problem").textContent()).trim();
  summary.wrongKeptSuggestion = await page.inputValue("textarea[name='f.suggestions']");
  summary.wrongKeptCategory = await page.isChecked(
    "input[name='f.respondent_category'][value='party_member']");
  await shot(page, "07-questionnaire-wrong");
  await page.uncheck("input[name='f.q_priorities'][value='openness']");
  await Promise.all([page.waitForURL(/\/r\//), page.click("button[value=save]")]);
  summary.questionnaire = new URL(page.url()).pathname.replace("/r/", "");
  await shot(page, "08-questionnaire-saved");

  // The evaluation grid: each member of the village × 满意 / 基本满意 / 不满意.
  await page.goto(`${base}/v/${s.village}/k/evaluation/new`);
  await page.check("input[name='f.respondent_category'][value='villager_rep']");
  await page.check("input[name='f.team_rating'][value='basically_satisfied']");
  const rows = page.locator("table.grid tbody tr");
  summary.gridRows = await rows.count();
  summary.gridHeader = (await page.locator("table.grid thead th").allTextContents()).join(" ");
  const ratings = ["satisfied", "unsatisfied", "basically_satisfied"];
  for (let i = 0; i < summary.gridRows; i++) {
    await rows.nth(i).locator(`input[type=radio][value='${ratings[i % 3]}']`).check();
  }
  await shot(page, "09-evaluation-form");
  await Promise.all([page.waitForURL(/\/r\//), page.click("button[value=save]")]);
  summary.evaluationPage = (await page.locator("main").textContent()).replace(/\s+/g, " ");
  await shot(page, "10-evaluation-saved");

  // Save and new, three times: the count goes up, the respondents' category stays.
  await page.goto(questionnaire);
  summary.saveAndNew = [];
  for (let i = 0; i < 3; i++) {
    if (i === 0) await page.check("input[name='f.respondent_category'][value='villager']");
    await answerAll(page, i + 1);
    await Promise.all([page.waitForURL(new RegExp(`saved=${i + 1}$`)),
      page.click("button[value=save_new]")]);
    summary.saveAndNew.push({
      count: (await page.locator("#saved").textContent()).trim(),
      categoryKept: await page.isChecked("input[name='f.respondent_category'][value='villager']"),
      answersCleared: (await page.locator(
        "input[type=radio][name='f.q_team_unity']:checked").count()) === 0,
    });
  }
  await shot(page, "11-save-and-new");

  summary.firstSync = await sync(page);
  await shot(page, "12-synced");

  // A second device edits the interviewer too (the test does it); this one edits it here.
  await ask("second-device-edits", { record: summary.interview });
  await page.goto(`${base}/r/${summary.interview}/edit`);
  await page.fill("input[name='f.interviewer']", "王组长");
  await Promise.all([page.waitForURL(/\/r\/[^/]+$/), page.click("button[value=save]")]);
  summary.conflictSync = await sync(page);
  summary.conflictsOnHome = (await page.locator("#conflicts").textContent()).trim();
  await Promise.all([page.waitForURL(`${base}/conflicts`), page.click("a[href='/conflicts']")]);
  const block = page.locator(`#c-${summary.interview}-interviewer`);
  summary.conflictHeading = (await page.locator("main h2").first().textContent()).trim();
  summary.conflictValues = (await block.locator("p.value strong").allTextContents()).map((t) => t.trim());
  await shot(page, "13-conflict");
  await block.locator("summary").click();
  await block.locator("input[name='f.interviewer']").fill("王组长、赵干事、李干事");
  await block.locator("details button[type=submit]").click();
  const resolved = page.locator("p.flash", { hasText: "冲突已解决" });
  await resolved.waitFor();
  summary.resolved = (await resolved.textContent()).trim();
  summary.conflictsLeft = await page.locator("#none").count();
  await shot(page, "14-conflict-resolved");
  summary.resolvedSync = await sync(page);
  summary.conflictsAfterSync = (await page.locator("#conflicts").textContent()).trim();
  await shot(page, "15-synced-again");

  // A bundle downloaded here and uploaded into a second app (a colleague's laptop).
  await page.goto(`${base}/bundle`);
  await shot(page, "16-bundle");
  const [download] = await Promise.all([page.waitForEvent("download"),
    page.click("a[href='/bundle/export']")]);
  const bundle = join(s.out, "fieldsync.fsb");
  await download.saveAs(bundle);
  summary.bundleName = download.suggestedFilename();
  const colleague = await open();
  await colleague.goto(s.secondLaunch);
  await colleague.goto(`${second}/bundle`);
  await colleague.setInputFiles("input[name=file]", bundle);
  await Promise.all([colleague.waitForURL(`${second}/bundle`),
    colleague.click("form[enctype] button[type=submit]")]);
  summary.imported = (await colleague.locator("#result").textContent()).trim();
  await shot(colleague, "17-bundle-imported");
  await colleague.goto(`${second}/`);
  summary.secondVillages = await colleague.locator(".card.village").count();
  await shot(colleague, "18-second-app-home");
  await colleague.goto(`${second}/r/${summary.interview}`);
  summary.secondShowsNote = (await colleague.locator("dd").allTextContents()).includes(note);
  await shot(colleague, "19-second-app-interview");

  // The department's dashboard: signed in with a code, the interview found and opened.
  await page.goto(`${s.server}/login`);
  await page.fill("input[name=code]", s.dashboardCode);
  await Promise.all([page.waitForURL(`${s.server}/ui`), page.click("button[type=submit]")]);
  await page.goto(`${s.server}/ui/c/${s.campaign}/search?q=${encodeURIComponent("产业项目")}`);
  summary.dashboardSearchLinks = await page.locator(`a[href='/ui/r/${summary.interview}']`).count();
  await shot(page, "20-dashboard-search");
  await page.goto(`${s.server}/ui/r/${summary.interview}`);
  const text = await page.locator("body").innerText();
  summary.dashboardShowsNote = text.replace(/\s+/g, "").includes(note);
  summary.dashboardShowsInterviewer = text.includes("王组长、赵干事、李干事");
  await shot(page, "21-dashboard-interview");
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
process.stdin.destroy();