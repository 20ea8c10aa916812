// Alerts: nothing produces them yet. Say so rather than show an empty table.
import {el} from "./util.js";

export function mountAlerts(container) {
  container.replaceChildren(
      el("section", {class: "page empty-state", "aria-labelledby": "alerts-title"},
         el("h1", {id: "alerts-title"}, "Alerts"),
         el("p", {}, "No alerts. Alerts come from rules, and rules are not implemented in Tern " +
                     "yet: nothing here can fire until they are."),
         el("p", {class: "muted"}, "Until then, watch live values on a device's page or the map.")));
  return () => {};
}
