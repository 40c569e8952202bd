/* The demo page's own behaviour (not part of the snippet). */
(function () {
  const $ = (id) => document.getElementById(id);
  function show(r) { $("code").textContent = r.code; $("end").disabled = false; $("start").disabled = true; }
  $("start").onclick = () => Cobrowse.start().then(show, (e) => { $("state").textContent = e.code || e.message; });
  $("end").onclick = () => { Cobrowse.end(); $("code").textContent = "-"; $("end").disabled = true; $("start").disabled = false; };
  Cobrowse.on("state", (s) => { $("state").textContent = "(" + (s.state || s) + ")"; });
  if (Cobrowse.getCode()) show({code: Cobrowse.getCode()});
  $("add").onclick = () => { const li = document.createElement("li"); li.textContent = "item " + ($("list").children.length + 1); $("list").appendChild(li); };
  const ctx = $("clock").getContext("2d");
  setInterval(() => {
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, 240, 120);
    ctx.fillStyle = "#222"; ctx.font = "28px sans-serif";
    ctx.fillText(new Date().toLocaleTimeString(), 20, 70);
  }, 1000);
})();
