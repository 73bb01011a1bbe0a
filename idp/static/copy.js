// Copy buttons. Without JavaScript the key stays selectable in its read-only field; with it,
// the button appears and copies the value in one click.
"use strict";

(function () {
  function announce(text) {
    var status = document.getElementById("copy-status");
    if (status) {
      status.textContent = text;
    }
  }

  function copyFrom(field) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(field.value);
    }
    // Older browsers: copy the selection instead.
    field.select();
    return document.execCommand("copy") ? Promise.resolve() : Promise.reject();
  }

  document.querySelectorAll("[data-copy-target]").forEach(function (button) {
    var field = document.getElementById(button.getAttribute("data-copy-target"));
    if (!field) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      copyFrom(field).then(
        function () {
          button.textContent = "Copied";
          announce("The key is copied to your clipboard.");
        },
        function () {
          field.select();
          announce("Copying failed; the key is selected, press Ctrl+C or Cmd+C.");
        }
      );
    });
    field.addEventListener("focus", function () {
      field.select();
    });
  });
})();
