/* zeroparty embed: <script src="https://HOST/embed.js" data-form="SLUG" async></script>
   Renders the form in an iframe that grows with its content. No dependencies, no cookies.
   The form speaks data-lang="de" if given, else the page's own <html lang>, where the
   form is offered in it (else the visitor's browser language decides). */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var slug = script.getAttribute("data-form") || "";
  if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(slug)) return;
  var origin = new URL(script.src).origin;
  var url = new URL("/f/" + slug, origin);
  url.searchParams.set("embed", "1");
  url.searchParams.set("parent", location.origin);
  url.searchParams.set("page", location.href.split("#")[0].slice(0, 2000));
  var lang = script.getAttribute("data-lang") || document.documentElement.lang || "";
  if (/^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$/.test(lang)) url.searchParams.set("lang", lang);
  new URLSearchParams(location.search).forEach(function (value, key) {
    if (/^utm_[a-z]{1,20}$/.test(key)) url.searchParams.set(key, value);
  });
  var frame = document.createElement("iframe");
  frame.src = url.href;
  frame.title = script.getAttribute("data-title") || "Form";
  frame.style.cssText = "display:block;width:100%;border:0;height:480px";
  var target = document.getElementById(script.getAttribute("data-target") || "");
  if (target) target.appendChild(frame);
  else script.parentNode.insertBefore(frame, script.nextSibling);
  window.addEventListener("message", function (event) {
    // Only our frame, from our origin, may resize it.
    if (event.origin !== origin || event.source !== frame.contentWindow) return;
    var data = event.data;
    if (data && data.type === "zeroparty:height" && typeof data.height === "number") {
      frame.style.height = Math.min(Math.max(Math.ceil(data.height), 80), 20000) + "px";
    }
  });
})();
