/* visitor/consent.js: the prompt that asks the visitor before anything is recorded (the
 * page may skip it with Cobrowse.start({consented: true}) when it asked in its own words). */

let cancelConsent = null; // Cobrowse.end() while the prompt shows: a "no"
function askConsent() {
  return new Promise((resolve) => {
    const host = document.createElement("cobrowse-consent");
    ours.add(host);
    host.setAttribute("style",
      "all: initial !important; position: fixed !important; right: 16px !important; bottom: 16px !important; " +
      "z-index: 2147483647 !important; display: block !important; pointer-events: auto !important;");
    const root = ORIG.attachShadow.call(host, { mode: "closed" });
    root.innerHTML = `<style>
      .box { font: 14px/1.45 system-ui, sans-serif; color: #111827; background: #fff; width: 320px;
        border-radius: 10px; box-shadow: 0 8px 30px rgba(0,0,0,.25); padding: 16px; box-sizing: border-box; }
      p { margin: 0 0 12px; }
      .row { display: flex; gap: 8px; justify-content: flex-end; }
      button { font: inherit; border-radius: 6px; padding: 6px 14px; cursor: pointer; border: 1px solid #d1d5db; background: #fff; color: #111827; }
      button.yes { background: #2563eb; border-color: #2563eb; color: #fff; }
      </style>
      <div class="box" role="dialog" aria-labelledby="t">
        <p id="t"></p><p class="small"></p>
        <div class="row"><button class="yes" type="button">Allow</button><button class="no" type="button">No thanks</button></div>
      </div>`;
    const [t, small] = root.querySelectorAll("p");
    t.textContent = `${CB_CFG.agentName} would like to see this page with you, to help you.`;
    small.textContent = "Passwords, card numbers and fields marked private stay hidden. You can stop at any time.";
    const done = (ok) => {
      cancelConsent = null;
      host.remove();
      resolve(ok);
    };
    cancelConsent = () => done(false);
    root.querySelector(".yes").addEventListener("click", () => done(true));
    root.querySelector(".no").addEventListener("click", () => done(false));
    root.addEventListener("keydown", (e) => { if (e.key === "Escape") done(false); });
    document.documentElement.appendChild(host);
    root.querySelector(".yes").focus();
  });
}
