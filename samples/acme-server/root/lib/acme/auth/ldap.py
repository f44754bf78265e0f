"""LDAP bind authentication (optional; configured in acme.conf [auth])."""


def bind_dn(template, username):
    # 2.2.0: escape the user name before substituting it into the DN template.
    escaped = "".join("\\" + c if c in ',+"\\<>;=' else c for c in username)
    return template.format(user=escaped)
