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
})();
