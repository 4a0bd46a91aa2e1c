// Applies the saved light/dark choice before the first paint (a module would run after it and
// flash the other theme). Classic script, no globals: the page sets no inline scripts (CSP).
(() => {
  try {
    const saved = window.localStorage.getItem("bf-theme");
    if (saved === "light" || saved === "dark") {
      document.documentElement.dataset.theme = saved;
    }
  } catch {
    // Storage can be switched off; the system preference then decides.
  }
})();
