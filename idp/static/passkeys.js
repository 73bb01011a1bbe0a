// Passkey ceremonies for forms marked data-passkey="register" | "login" | "second".
// The server makes the options and checks the answer; this only carries them between
// the page and the browser's WebAuthn API, then submits the form (idp/signin/passkeys.py).
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !PublicKeyCredential.parseCreationOptionsFromJSON) {
    return;
  }
  document.querySelectorAll("form[data-passkey]").forEach(function (form) {
    var button = form.querySelector("[data-passkey-start]");
    var status = form.querySelector(".passkey-status");
    form.hidden = false;
    button.addEventListener("click", async function () {
      status.textContent = "";
      try {
        var token = form.querySelector("[name=csrf_token]").value;
        var password = form.querySelector("[name=password]");
        if (form.dataset.confirm && password) {
          // The current password first: the server refuses the options without it.
          var confirmed = await fetch(form.dataset.confirm, {
            method: "POST", credentials: "same-origin", headers: {"X-CSRFToken": token},
            body: new URLSearchParams({csrf_token: token, password: password.value}),
          });
          password.value = "";
          if (!confirmed.ok) {
            var refusal = await confirmed.json().catch(function () { return {}; });
            status.textContent = refusal.message || "The password could not be checked. Try again.";
            password.focus();
            return;
          }
        }
        var answer = await fetch(form.dataset.options, {
          method: "POST", credentials: "same-origin", headers: {"X-CSRFToken": token},
        });
        if (!answer.ok) {
          throw new Error("options answered " + answer.status);
        }
        var options = await answer.json();
        var credential;
        if (form.dataset.passkey === "register") {
          credential = await navigator.credentials.create(
            {publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options)});
        } else {
          credential = await navigator.credentials.get(
            {publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
        }
        form.querySelector("[name=credential]").value = JSON.stringify(credential.toJSON());
        form.submit();
      } catch (error) {
        status.textContent = "The passkey was not used. Try again, or choose another way.";
      }
    });
  });
})();
