// Light, dark or as the system says (prefers-color-scheme): the header's button cycles
// auto → light → dark, remembered in localStorage; <html data-theme> carries the choice.

const KEY = "taskd.theme";
const ORDER = ["auto", "light", "dark"];
const ICON = { auto: "◐ auto", light: "☀ light", dark: "☾ dark" };

function stored() {
  try {
    const value = localStorage.getItem(KEY);
    return ORDER.includes(value) ? value : "auto";
  } catch {
    return "auto"; // storage refused (privacy settings): the system's choice
  }
}

function apply(choice, button) {
  if (choice === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = choice;
  button.textContent = ICON[choice];
  button.title = `Theme: ${choice} (click to change)`;
}

export function initTheme(button, onChange) {
  let choice = stored();
  apply(choice, button);
  button.addEventListener("click", () => {
    choice = ORDER[(ORDER.indexOf(choice) + 1) % ORDER.length];
    try {
      localStorage.setItem(KEY, choice);
    } catch {
      // not remembered, still applied
    }
    apply(choice, button);
    onChange();
  });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => choice === "auto" && onChange());
}
