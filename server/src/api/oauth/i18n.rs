//! The words of the sign-in and consent pages in the console's languages
//! (English, German, Spanish, Catalan), chosen by `?lang=` or the browser's
//! `Accept-Language`. `{client}`, `{host}`, `{user}` and `{provider}` are filled in,
//! escaped, by the page.

use axum::http::{header, HeaderMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lang {
    En,
    De,
    Es,
    Ca,
}

impl Lang {
    pub(super) const ALL: [Lang; 4] = [Lang::En, Lang::De, Lang::Es, Lang::Ca];

    pub(super) fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
            Lang::Es => "es",
            Lang::Ca => "ca",
        }
    }

    fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag
            .trim()
            .split(['-', '_', ';'])
            .next()?
            .to_ascii_lowercase();
        Lang::ALL.into_iter().find(|l| l.code() == primary)
    }

    /// `lang` if given and known, else the first known language of
    /// `Accept-Language` in the browser's order of preference.
    pub(super) fn negotiate(lang: Option<&str>, headers: &HeaderMap) -> Lang {
        if let Some(l) = lang.and_then(Lang::from_tag) {
            return l;
        }
        let mut offered: Vec<(f32, Lang)> = headers
            .get_all(header::ACCEPT_LANGUAGE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|item| {
                let q = item
                    .split(';')
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse().ok())
                    .unwrap_or(1.0);
                Lang::from_tag(item).map(|l| (q, l))
            })
            .collect();
        // Stable: equal weights keep the browser's order.
        offered.sort_by(|a, b| b.0.total_cmp(&a.0));
        offered.first().map_or(Lang::En, |(_, l)| *l)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    SignInTitle,
    SignInLead,
    Username,
    Password,
    SignIn,
    WrongPassword,
    ConsentTitle,
    ConsentSignedInAs,
    ConsentWhat,
    ConsentRevoke,
    Allow,
    Deny,
    FailedTitle,
    UnknownClient,
    BadRequest,
    Gone,
    OtherBrowser,
    Internal,
    LinkTitle,
    LinkLead,
    Code,
    Continue,
    DeviceAllowed,
    DeviceDenied,
    SignInWith,
    ResetTitle,
    ResetWhat,
    ResetAllow,
    ResetAllowed,
    ResetDenied,
}

impl Key {
    #[cfg(test)]
    pub(super) const ALL: [Key; 30] = [
        Key::SignInTitle,
        Key::SignInLead,
        Key::Username,
        Key::Password,
        Key::SignIn,
        Key::WrongPassword,
        Key::ConsentTitle,
        Key::ConsentSignedInAs,
        Key::ConsentWhat,
        Key::ConsentRevoke,
        Key::Allow,
        Key::Deny,
        Key::FailedTitle,
        Key::UnknownClient,
        Key::BadRequest,
        Key::Gone,
        Key::OtherBrowser,
        Key::Internal,
        Key::LinkTitle,
        Key::LinkLead,
        Key::Code,
        Key::Continue,
        Key::DeviceAllowed,
        Key::DeviceDenied,
        Key::SignInWith,
        Key::ResetTitle,
        Key::ResetWhat,
        Key::ResetAllow,
        Key::ResetAllowed,
        Key::ResetDenied,
    ];
}

/// `key` in `lang`.
pub(super) fn t(lang: Lang, key: Key) -> &'static str {
    let [en, de, es, ca] = match key {
        Key::SignInTitle => [
            "Sign in",
            "Anmelden",
            "Iniciar sesión",
            "Inicia la sessió",
        ],
        Key::SignInLead => [
            "Sign in to continue to {client}.",
            "Melden Sie sich an, um mit {client} fortzufahren.",
            "Inicie sesión para continuar en {client}.",
            "Inicieu la sessió per continuar a {client}.",
        ],
        Key::Username => ["Username", "Benutzername", "Nombre de usuario", "Nom d'usuari"],
        Key::Password => ["Password", "Passwort", "Contraseña", "Contrasenya"],
        Key::SignIn => ["Sign in", "Anmelden", "Iniciar sesión", "Inicia la sessió"],
        Key::WrongPassword => [
            "Wrong username or password.",
            "Benutzername oder Passwort ist falsch.",
            "Nombre de usuario o contraseña incorrectos.",
            "El nom d'usuari o la contrasenya no són correctes.",
        ],
        Key::ConsentTitle => [
            "Allow {client} to use your account?",
            "{client} Zugriff auf Ihr Konto erlauben?",
            "¿Permitir que {client} use su cuenta?",
            "Voleu permetre que {client} utilitzi el vostre compte?",
        ],
        Key::ConsentSignedInAs => [
            "Signed in as {user}.",
            "Angemeldet als {user}.",
            "Sesión iniciada como {user}.",
            "Sessió iniciada com a {user}.",
        ],
        Key::ConsentWhat => [
            "{client} ({host}) will be a new device of your account: it can read and send your messages and manage its own encryption keys.",
            "{client} ({host}) wird ein neues Gerät Ihres Kontos: Es kann Ihre Nachrichten lesen und senden und seine eigenen Verschlüsselungsschlüssel verwalten.",
            "{client} ({host}) será un nuevo dispositivo de su cuenta: podrá leer y enviar sus mensajes y gestionar sus propias claves de cifrado.",
            "{client} ({host}) serà un dispositiu nou del vostre compte: podrà llegir i enviar els vostres missatges i gestionar les seves pròpies claus de xifratge.",
        ],
        Key::ConsentRevoke => [
            "You can sign it out at any time from your list of devices.",
            "Sie können es jederzeit in Ihrer Geräteliste abmelden.",
            "Puede cerrar su sesión en cualquier momento desde su lista de dispositivos.",
            "Podeu tancar-ne la sessió en qualsevol moment des de la vostra llista de dispositius.",
        ],
        Key::Allow => ["Allow", "Erlauben", "Permitir", "Permet"],
        Key::Deny => ["Deny", "Ablehnen", "Denegar", "Denega"],
        Key::FailedTitle => [
            "This sign-in cannot go on",
            "Diese Anmeldung kann nicht fortgesetzt werden",
            "Este inicio de sesión no puede continuar",
            "Aquest inici de sessió no pot continuar",
        ],
        Key::UnknownClient => [
            "The app is not registered here, or it asked to return somewhere it did not register. Nothing was sent to it.",
            "Die App ist hier nicht registriert oder wollte an eine nicht registrierte Adresse zurück. Es wurde nichts an sie gesendet.",
            "La aplicación no está registrada aquí o pidió volver a una dirección no registrada. No se le ha enviado nada.",
            "L'aplicació no està registrada aquí o ha demanat tornar a una adreça no registrada. No se li ha enviat res.",
        ],
        Key::BadRequest => [
            "The app's sign-in request is incomplete.",
            "Die Anmeldeanfrage der App ist unvollständig.",
            "La solicitud de inicio de sesión de la aplicación está incompleta.",
            "La sol·licitud d'inici de sessió de l'aplicació és incompleta.",
        ],
        Key::Gone => [
            "This sign-in has expired or is finished. Start again from the app.",
            "Diese Anmeldung ist abgelaufen oder abgeschlossen. Beginnen Sie erneut in der App.",
            "Este inicio de sesión ha caducado o ha terminado. Vuelva a empezar desde la aplicación.",
            "Aquest inici de sessió ha caducat o ha acabat. Torneu a començar des de l'aplicació.",
        ],
        Key::OtherBrowser => [
            "This sign-in was started in another browser, or cookies are blocked. Start again from the app in this browser.",
            "Diese Anmeldung wurde in einem anderen Browser begonnen, oder Cookies sind blockiert. Beginnen Sie in diesem Browser erneut in der App.",
            "Este inicio de sesión se empezó en otro navegador o las cookies están bloqueadas. Vuelva a empezar desde la aplicación en este navegador.",
            "Aquest inici de sessió es va començar en un altre navegador o les galetes estan blocades. Torneu a començar des de l'aplicació en aquest navegador.",
        ],
        Key::Internal => [
            "Something went wrong on the server. Try again later.",
            "Auf dem Server ist ein Fehler aufgetreten. Versuchen Sie es später erneut.",
            "Algo ha fallado en el servidor. Inténtelo de nuevo más tarde.",
            "Alguna cosa ha fallat al servidor. Torneu-ho a provar més tard.",
        ],
        Key::LinkTitle => [
            "Sign in on another device",
            "Auf einem anderen Gerät anmelden",
            "Iniciar sesión en otro dispositivo",
            "Inicia la sessió en un altre dispositiu",
        ],
        Key::LinkLead => [
            "Enter the code your other device shows.",
            "Geben Sie den Code ein, den Ihr anderes Gerät anzeigt.",
            "Introduzca el código que muestra su otro dispositivo.",
            "Introduïu el codi que mostra l'altre dispositiu.",
        ],
        Key::Code => ["Code", "Code", "Código", "Codi"],
        Key::Continue => ["Continue", "Weiter", "Continuar", "Continua"],
        Key::DeviceAllowed => [
            "Done: your other device is signing in. You can close this page.",
            "Fertig: Ihr anderes Gerät wird angemeldet. Sie können diese Seite schließen.",
            "Listo: su otro dispositivo está iniciando sesión. Puede cerrar esta página.",
            "Fet: l'altre dispositiu està iniciant la sessió. Podeu tancar aquesta pàgina.",
        ],
        Key::DeviceDenied => [
            "Denied: your other device was not signed in.",
            "Abgelehnt: Ihr anderes Gerät wurde nicht angemeldet.",
            "Denegado: su otro dispositivo no ha iniciado sesión.",
            "Denegat: l'altre dispositiu no ha iniciat la sessió.",
        ],
        Key::SignInWith => [
            "Sign in with {provider}",
            "Mit {provider} anmelden",
            "Iniciar sesión con {provider}",
            "Inicia la sessió amb {provider}",
        ],
        Key::ResetTitle => [
            "Reset your digital identity?",
            "Ihre digitale Identität zurücksetzen?",
            "¿Restablecer su identidad digital?",
            "Voleu restablir la vostra identitat digital?",
        ],
        Key::ResetWhat => [
            "Your app asks to replace your cross-signing keys. Do this only if you started it in the app: your other devices and contacts will have to verify you again, and messages you cannot decrypt now stay unreadable. The app may do it within the next 10 minutes.",
            "Ihre App möchte Ihre Cross-Signing-Schlüssel ersetzen. Tun Sie das nur, wenn Sie es in der App begonnen haben: Ihre anderen Geräte und Kontakte müssen Sie erneut verifizieren, und Nachrichten, die Sie jetzt nicht entschlüsseln können, bleiben unlesbar. Die App kann es in den nächsten 10 Minuten tun.",
            "Su aplicación pide sustituir sus claves de firma cruzada. Hágalo solo si lo inició usted en la aplicación: sus otros dispositivos y contactos tendrán que verificarle de nuevo, y los mensajes que ahora no puede descifrar seguirán ilegibles. La aplicación puede hacerlo en los próximos 10 minutos.",
            "La vostra aplicació demana substituir les vostres claus de signatura creuada. Feu-ho només si ho heu començat a l'aplicació: els altres dispositius i contactes us hauran de tornar a verificar, i els missatges que ara no podeu desxifrar continuaran il·legibles. L'aplicació ho pot fer en els propers 10 minuts.",
        ],
        Key::ResetAllow => ["Allow the reset", "Zurücksetzen erlauben", "Permitir el restablecimiento", "Permet el restabliment"],
        Key::ResetAllowed => [
            "Allowed: go back to your app to finish the reset.",
            "Erlaubt: Kehren Sie zu Ihrer App zurück, um das Zurücksetzen abzuschließen.",
            "Permitido: vuelva a su aplicación para terminar el restablecimiento.",
            "Permès: torneu a l'aplicació per acabar el restabliment.",
        ],
        Key::ResetDenied => [
            "Not allowed: your keys stay as they are.",
            "Nicht erlaubt: Ihre Schlüssel bleiben, wie sie sind.",
            "No permitido: sus claves siguen como están.",
            "No permès: les vostres claus es queden com estan.",
        ],
    };
    match lang {
        Lang::En => en,
        Lang::De => de,
        Lang::Es => es,
        Lang::Ca => ca,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders(s: &str) -> Vec<&str> {
        let mut found: Vec<&str> = ["{client}", "{host}", "{user}", "{provider}"]
            .into_iter()
            .filter(|p| s.contains(p))
            .collect();
        found.sort_unstable();
        found
    }

    #[test]
    fn every_language_has_every_text_with_the_same_placeholders() {
        for key in Key::ALL {
            let english = placeholders(t(Lang::En, key));
            for lang in Lang::ALL {
                let text = t(lang, key);
                assert!(!text.trim().is_empty(), "{key:?} in {lang:?}");
                assert_eq!(placeholders(text), english, "{key:?} in {lang:?}");
            }
        }
    }

    #[test]
    fn language_follows_the_query_then_the_browser() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_LANGUAGE,
            "fr-FR, de-CH;q=0.8, ca;q=0.9".parse().unwrap(),
        );
        assert_eq!(Lang::negotiate(None, &headers), Lang::Ca);
        assert_eq!(Lang::negotiate(Some("es"), &headers), Lang::Es);
        assert_eq!(Lang::negotiate(Some("xx"), &HeaderMap::new()), Lang::En);
    }
}
