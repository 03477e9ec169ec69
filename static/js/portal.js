// A few enhancements; every page works without them.
(function () {
  "use strict";
  // Show or hide the password fields (paste works either way).
  document.querySelectorAll("[data-show-passwords]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var fields = button.form.querySelectorAll("input[autocomplete='new-password']");
      var show = fields.length && fields[0].type === "password";
      fields.forEach(function (field) { field.type = show ? "text" : "password"; });
      button.textContent = show ? button.dataset.hide : button.dataset.show;
    });
  });
  // Print the plan.
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });

  // An error answer that is not one of our pages (a proxy's 502, say) has no main content to
  // swap in: say so in the page's language, from its own inert template, rather than leave a
  // blank page.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr.status < 400 || xhr.status === 422 || /id="main"/.test(xhr.responseText || "")) {
      return;
    }
    event.detail.shouldSwap = false;
    var main = document.getElementById("main");
    var template = document.getElementById("answer-unreadable");
    if (main && template) {
      main.replaceChildren(template.content.cloneNode(true));
      main.querySelector("[data-focus]").focus();
    }
  });

  // After htmx replaces part of the page, put the person's focus where a page load would:
  // on a message that needs reading (an error summary, an error page's heading), or else back
  // on the control they used, which the swap replaced (a ticked step keeps its place).
  var lastFocused = null;
  document.addEventListener("htmx:beforeRequest", function () {
    lastFocused = document.activeElement && document.activeElement.id;
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    var scope = event.detail.target && event.detail.target.isConnected
      ? event.detail.target : document;
    var message = scope.querySelector("[data-focus]") || document.querySelector("#main [data-focus]");
    if (message) {
      message.focus();
      return;
    }
    if (lastFocused && (!document.activeElement || document.activeElement === document.body)) {
      var again = document.getElementById(lastFocused);
      if (again) { again.focus(); }
    }
  });
})();
