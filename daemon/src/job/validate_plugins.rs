//! Validation of a job's plugins: where a plugin file may be, and its limits and config.

use super::raw::*;
use super::validate::Validator;
use super::*;

impl Validator<'_> {
    pub(super) fn plugin_path(
        &mut self,
        key: &str,
        p: &Spanned<String>,
        config: &Config,
    ) -> PathBuf {
        let path = config.plugins_dir.join(p.get_ref());
        let inside = Path::new(p.get_ref()).components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        if !inside {
            // The operator's plugins_dir is the set of plugins jobs may load: a job file names
            // one in it, not a module elsewhere on the machine.
            self.err(
                Some(p.span()),
                format!(
                    "{key}: `{}` must name a file inside plugins_dir ({}): no `..`, no absolute path",
                    p.get_ref(),
                    config.plugins_dir.display()
                ),
            );
        } else if !p.get_ref().ends_with(".wasm") {
            self.err(
                Some(p.span()),
                format!("{key}: `{}` should name a .wasm file", p.get_ref()),
            );
        } else if !path.is_file() {
            self.err(
                Some(p.span()),
                format!(
                    "{key}: plugin `{}` not found in {}",
                    p.get_ref(),
                    config.plugins_dir.display()
                ),
            );
        }
        path
    }

    pub(super) fn limits(
        &mut self,
        key: &str,
        timeout: &Option<Spanned<String>>,
        memory: &Option<Spanned<String>>,
    ) -> PluginLimits {
        let mut l = PluginLimits::default();
        if let Some(t) = self.duration(&format!("{key}.timeout"), timeout) {
            l.timeout = t;
        }
        if let Some(m) = memory {
            match parse_size(m.get_ref()) {
                Ok(n) if n >= 1024 * 1024 => l.memory_bytes = n,
                Ok(_) => self.err(Some(m.span()), format!("{key}.memory: at least 1MiB")),
                Err(e) => self.err(Some(m.span()), format!("{key}.memory: {e}")),
            }
        }
        l
    }

    pub(super) fn generator(
        &mut self,
        i: usize,
        g: Spanned<RawPlugin>,
        config: &Config,
    ) -> Option<GeneratorSpec> {
        let g = g.into_inner();
        let key = format!("generators[{i}]");
        let path = self.plugin_path(&format!("{key}.plugin"), &g.plugin, config);
        let limits = self.limits(&key, &g.timeout, &g.memory);
        let config_json = table_json(&g.config);
        let d = self.src.at(Some(g.plugin.span()), "");
        Some(GeneratorSpec {
            path,
            at: (d.line, d.col),
            config_json,
            limits,
        })
    }
}
