"""A small query builder that always uses bound parameters."""


def select(table, columns=("*",), where=None):
    sql = f"SELECT {', '.join(columns)} FROM {table}"
    params = []
    if where:
        sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
        params = list(where.values())
    return sql, params
