"""The texts otpgate ships, per locale.

Each follows the common practice of its language for one-time codes: the brand, the
code where a reader of that language looks for it, how long it lives, and the usual
warning not to share it. Chinese and Japanese put the brand in 【】, as their senders
sign messages; Arabic opens with Arabic words, so that the message reads right to left.

Every SMS fits one segment with a brand as short as ``otpgate``, the longest code (10
digits) and the longest TTL's minutes (a test holds this). French and German stay
within GSM-7 (160 septets); Spanish and Portuguese need ó, ã and the like, outside
GSM-7, so they and the non-Latin scripts are UCS-2: 70 units, hence their shorter
wording.
"""

from __future__ import annotations

from otpgate.core.locales import LocaleTexts

EN = LocaleTexts(
    sms="Your {brand} code is {code}. It expires in {minutes}. Don't share it.",
    voice="Your {brand} code is {code}. Again, your code is {code}.",
    email_subject="Your {brand} verification code",
    email_body=("Your {brand} verification code is {code}.\n\n"
                "It expires in {minutes}. If you did not ask for it, ignore this e-mail. "
                "Never share this code with anyone.\n"),
    minutes={"one": "{n} minute", "other": "{n} minutes"},
)
ES = LocaleTexts(
    sms="Código de {brand}: {code}. Vence en {minutes}. No lo compartas.",
    voice="Tu código de {brand} es {code}. Repito: tu código es {code}.",
    email_subject="Tu código de verificación de {brand}",
    email_body=("Tu código de verificación de {brand} es {code}.\n\n"
                "Vence en {minutes}. Si no lo has solicitado, ignora este correo. "
                "No compartas este código con nadie.\n"),
    minutes={"one": "{n} minuto", "other": "{n} minutos"},
)
FR = LocaleTexts(
    sms=("Votre code {brand} est {code}. Il expire dans {minutes}. "
         "Ne le communiquez à personne."),
    voice="Votre code {brand} est {code}. Je répète : votre code est {code}.",
    email_subject="Votre code de vérification {brand}",
    email_body=("Votre code de vérification {brand} est {code}.\n\n"
                "Il expire dans {minutes}. Si vous n’êtes pas à l’origine de cette "
                "demande, ignorez cet e-mail. Ne communiquez jamais ce code à personne.\n"),
    minutes={"one": "{n} minute", "other": "{n} minutes"},
)
DE = LocaleTexts(
    sms=("Ihr {brand}-Code lautet {code}. Er läuft in {minutes} ab. "
         "Geben Sie ihn nicht weiter."),
    voice="Ihr {brand}-Code lautet {code}. Ich wiederhole: {code}.",
    email_subject="Ihr {brand}-Bestätigungscode",
    email_body=("Ihr {brand}-Bestätigungscode lautet {code}.\n\n"
                "Er läuft in {minutes} ab. Wenn Sie ihn nicht angefordert haben, können "
                "Sie diese E-Mail ignorieren. Geben Sie den Code niemals weiter.\n"),
    minutes={"one": "{n} Minute", "other": "{n} Minuten"},
)
PT_BR = LocaleTexts(
    sms="Seu código {brand} é {code}. Vale por {minutes}. Não compartilhe.",
    voice="Seu código {brand} é {code}. Repetindo: seu código é {code}.",
    email_subject="Seu código de verificação {brand}",
    email_body=("Seu código de verificação {brand} é {code}.\n\n"
                "Ele vale por {minutes}. Se você não pediu este código, ignore este "
                "e-mail. Nunca compartilhe este código com ninguém.\n"),
    minutes={"one": "{n} minuto", "other": "{n} minutos"},
)
PT_PT = LocaleTexts(
    sms="Código {brand}: {code}. Válido por {minutes}. Não o partilhe.",
    voice="O seu código {brand} é {code}. Repito: o seu código é {code}.",
    email_subject="O seu código de verificação {brand}",
    email_body=("O seu código de verificação {brand} é {code}.\n\n"
                "É válido durante {minutes}. Se não pediu este código, ignore este "
                "e-mail. Nunca partilhe este código com ninguém.\n"),
    minutes={"one": "{n} minuto", "other": "{n} minutos"},
)
HI = LocaleTexts(
    sms="आपका {brand} कोड {code} है। {minutes} तक मान्य। किसी से साझा न करें।",
    voice="आपका {brand} कोड है {code}। दोबारा सुनिए, आपका कोड है {code}।",
    email_subject="आपका {brand} सत्यापन कोड",
    email_body=("आपका {brand} सत्यापन कोड {code} है।\n\n"
                "यह {minutes} तक मान्य है। अगर आपने यह कोड नहीं माँगा था, तो इस ईमेल को "
                "अनदेखा करें। यह कोड किसी के साथ साझा न करें।\n"),
    minutes={"one": "{n} मिनट", "other": "{n} मिनट"},
)
AR = LocaleTexts(
    sms="رمز {brand}: {code}. صالح لمدة {minutes}. لا تشاركه مع أحد.",
    voice="رمز التحقق من {brand} هو {code}. أكرر، الرمز هو {code}.",
    email_subject="رمز التحقق من {brand}",
    email_body=("رمز التحقق من {brand} هو {code}.\n\n"
                "الرمز صالح لمدة {minutes}. إذا لم تطلب هذا الرمز، فتجاهل هذه الرسالة. "
                "لا تشارك هذا الرمز مع أي شخص.\n"),
    # After "لمدة" (for): the genitive — دقيقتين, not دقيقتان.
    minutes={"zero": "{n} دقيقة", "one": "دقيقة واحدة", "two": "دقيقتين",
             "few": "{n} دقائق", "many": "{n} دقيقة", "other": "{n} دقيقة"},
)
ZH = LocaleTexts(
    sms="【{brand}】您的验证码为{code}，{minutes}内有效。请勿泄露给他人。",
    voice="您的{brand}验证码是{code}。再说一遍，您的验证码是{code}。",
    email_subject="您的{brand}验证码",
    email_body=("您的{brand}验证码是{code}。\n\n"
                "验证码{minutes}内有效。如果这不是您本人的操作，请忽略此邮件。"
                "请勿将验证码告诉任何人。\n"),
    minutes={"other": "{n}分钟"},
)
ZH_HANT = LocaleTexts(
    sms="【{brand}】您的驗證碼為{code}，{minutes}內有效。請勿告知他人。",
    voice="您的{brand}驗證碼是{code}。再說一次，您的驗證碼是{code}。",
    email_subject="您的{brand}驗證碼",
    email_body=("您的{brand}驗證碼是{code}。\n\n"
                "驗證碼{minutes}內有效。如果您沒有提出這項要求，請忽略這封郵件。"
                "請勿將驗證碼告訴任何人。\n"),
    minutes={"other": "{n}分鐘"},
)
JA = LocaleTexts(
    sms="{brand}の認証コードは{code}です。有効期間は{minutes}です。他人に教えないでください。",
    voice="{brand}の認証コードは{code}です。もう一度言います。{code}です。",
    email_subject="{brand}の認証コード",
    email_body=("{brand}の認証コードは{code}です。\n\n"
                "有効期間は{minutes}です。お心当たりのない場合は、このメールを破棄して"
                "ください。このコードは誰にも教えないでください。\n"),
    minutes={"other": "{n}分"},
)
RU = LocaleTexts(
    sms="Код {brand}: {code}. Действует {minutes}. Никому его не сообщайте.",
    voice="Ваш код {brand}: {code}. Повторяю: {code}.",
    email_subject="Ваш код подтверждения {brand}",
    email_body=("Ваш код подтверждения {brand}: {code}.\n\n"
                "Код действует {minutes}. Если вы не запрашивали код, просто "
                "проигнорируйте это письмо. Никому не сообщайте этот код.\n"),
    # "Действует 1 минуту, 2 минуты, 5 минут": the accusative of duration.
    minutes={"one": "{n} минуту", "few": "{n} минуты", "many": "{n} минут"},
)

SHIPPED: dict[str, LocaleTexts] = {
    "en": EN, "es": ES, "fr": FR, "de": DE,
    "pt": PT_BR, "pt-BR": PT_BR, "pt-PT": PT_PT,
    "hi": HI, "ar": AR, "ru": RU, "ja": JA,
    "zh": ZH, "zh-TW": ZH_HANT, "zh-HK": ZH_HANT, "zh-MO": ZH_HANT,
}
"""Locale → texts. ``pt`` is Brazilian Portuguese, by far the most spoken; Taiwan, Hong
Kong and Macau read Traditional Chinese, the rest of ``zh`` Simplified."""
