"""Config helpers: instantiation and the resolvers the YAML files use."""
