// The login page: user name and password → POST /api/v1/auth/login.
import {login} from "./api.js";
import {el} from "./util.js";

export function mountLogin(container, {onLoggedIn}) {
  const error = el("p", {id: "login-error", class: "error", role: "alert"});
  const name = el("input", {id: "login-name", name: "username", autocomplete: "username",
                            required: true, autofocus: true});
  const password = el("input", {id: "login-password", name: "password", type: "password",
                                autocomplete: "current-password", required: true});
  const submit = el("button", {type: "submit"}, "Log in");
  const form = el("form", {class: "login-form", "aria-labelledby": "login-title"},
                  el("h1", {id: "login-title"}, "Tern"),
                  el("p", {class: "muted"}, "Log in to see your devices."),
                  el("label", {for: "login-name"}, "User name"), name,
                  el("label", {for: "login-password"}, "Password"), password,
                  error, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      await login(name.value, password.value);
      onLoggedIn();
    } catch (e) {
      error.textContent = e.status === 401 ? "Wrong user name or password."
                        : e.status === 429 ? `Too many attempts: ${e.message}`
                        : `Login failed: ${e.message}`;
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  container.replaceChildren(el("div", {class: "login-page"}, form));
  name.focus();
  return () => {};
}
